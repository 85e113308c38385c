"""The argument blocks: the contract between the entries and the workers (like oneDNN's
``rnn_conf_t``).

An entry (``forward_entry``, ``backward_entry``) validates nothing (the Python layer did), lays
out the caller's workspace, and writes every size, stride and address a worker needs into an
int64 block; the workers read it by the word offsets below (``A_*`` forward, ``G_*`` backward).
Right after the block come the sync words of the team (``W_*``, one cache line each).
"""

from __future__ import annotations

# Forward argument block (int64 words) handed from forward_entry to the workers.
(A_T, A_B, A_I, A_H, A_S, A_NSTEPS, A_REV, A_NP, A_NPP, A_KS, A_FLAGS, A_CLIP, A_BULK, A_NLAUNCH, A_WAIT,
 A_DIRECT, A_SYNC, A_X, A_WIH, A_WHH, A_BIH, A_BHH, A_WHR, A_PEEP, A_PSTEP, A_LDPEEP, A_ORDER, A_LENS, A_Y,
 A_YS0, A_YS1, A_HN, A_CN, A_WIP, A_WHP, A_WHRP, A_BP, A_XP, A_LD, A_ACC, A_HB, A_LDH, A_C, A_LDC, A_R, A_XA,
 A_XAROWS, A_TOF, A_ZERO, A_RC, A_LAYOUT, A_TG, A_TC, A_TK, A_PACKED) = range(55)
NARGS = 64
# Sync words (int64, 8 apart = one cache line each): arrivals, the decided team size, then per
# worker v the steps it finished (DONE) and, with a projection, the steps whose gate update it
# finished (RDONE, one line further).
W_ARRIVED, W_TEAM, W_DONE0 = 0, 8, 16
MAXTEAM = 64
SYNC_LEN = W_DONE0 + 16 * MAXTEAM
WAIT_TICKS = 200_000          # the first worker waits at most this long (~50-80 us) for the team
SPINS_BEFORE_YIELD = 2000

# Argument block of a backward call (int64 words), from ``backward_entry`` to the workers.
(G_T, G_B, G_I, G_H, G_HP, G_NSTEPS, G_REV, G_FLAGS, G_NLAUNCH, G_WAIT, G_SYNC, G_X, G_GATES, G_CELLS, G_CLIPPED,
 G_H0, G_C0, G_DY, G_YS0, G_YS1, G_DHN, G_DCN, G_ORDER, G_LENS, G_WIH, G_WHH, G_PEEP, G_DX, G_DH0, G_DC0, G_DWIH,
 G_DWHH, G_DB, G_DPEEP, G_DZ, G_TB, G_XH, G_LDK, G_CT, G_LDCT, G_DXS, G_LDX, G_WIP, G_WHP, G_DH, G_LDH, G_DC,
 G_HROW, G_DPACC, G_ZERO, G_P, G_WHR, G_DWHR, G_MP, G_DHT, G_CR, G_LDM, G_WHRC, G_WHRP, G_DM) = range(60)
GARGS = NARGS

# Cell team argument block (int64 words), from ``cell_team_entry`` to the cell workers; the word
# ``NARGS + W_ARRIVED`` after it counts the workers that finished.
(C_B, C_I, C_H, C_S, C_NP, C_SPLIT, C_KS, C_LDT, C_LDC, C_FLAGS, C_CLIP, C_N, C_X, C_HIN, C_CIN, C_COUT, C_HOUT,
 C_WIH, C_WHH, C_TILES, C_BIAS, C_HB, C_PEEP, C_PSTEP, C_LDPEEP) = range(25)

# The step of ``lstm_backends.jit`` (``jitstep``): the argument block (int64 words) a wrapper in the
# user's function writes on its stack before it calls the step kernel: the rows' addresses and
# strides, then the weights' (the meta record's and the panels').
(E_XA, E_LDX, E_HA, E_LDH, E_HO, E_CA, E_CO, E_LDC, E_YA, E_LDY, E_META, E_WIH, E_WHH, E_BIAS, E_WHR, E_PEEP,
 E_PSTEP, E_LDPEEP, E_ZERO) = range(19)
EARGS = 19
# The prepared weights' meta record (``embed.meta_dtype``): these int64 fields, then clip (float64),
# then the stamp field; M_* are their word offsets.
META_FIELDS = ("I", "H", "S", "P", "NP", "NPP", "split", "ks", "mr", "flags", "m")
(M_I, M_H, M_S, M_P, M_NP, M_NPP, M_SPLIT, M_KS, M_MR, M_FLAGS, M_M, M_CLIP) = range(12)


__all__ = [name for name in dir() if name[:2] in ("A_", "C_", "E_", "G_", "M_", "W_")] + [
    "EARGS", "GARGS", "MAXTEAM", "META_FIELDS", "NARGS", "SPINS_BEFORE_YIELD", "SYNC_LEN", "WAIT_TICKS"]
