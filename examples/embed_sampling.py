"""Sample text from a character-level LSTM language model inside one ``@numba.njit`` function.

The model is a one-layer LSTM with a linear head, stored as a PyTorch-style ``state_dict`` of
NumPy arrays (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` as in
``torch.nn.LSTM``, ``head.weight`` and ``head.bias`` as in a ``torch.nn.Linear``; torch is not
needed).  It is first trained for a few seconds on a nursery rhyme with this library's own
training pass (``LSTM.forward_train`` / ``backward`` and a few lines of Adam), so that its samples
are recognisably better than those of the untrained model.

Then the whole sampling loop — prime on a prompt with ``lj.forward``, then per character
``lj.cell``, the head, a softmax with a temperature, a draw from a seeded ``np.random`` — runs in
one compiled function, and the same loop written in Python over ``Backend.cell(..., out=...)`` checks
it (same characters, bitwise the same final state) and is timed against it.
"""

import time

import numba
import numpy as np

import lstm_backends as lb
from lstm_backends import jit as lj

TEXT = (
    "twinkle, twinkle, little star,\n"
    "how i wonder what you are!\n"
    "up above the world so high,\n"
    "like a diamond in the sky.\n"
)
CHARS = sorted(set(TEXT))
VOCAB, HIDDEN = len(CHARS), 64


def encode(s):
    return np.array([CHARS.index(ch) for ch in s], np.int64)


def decode(ids):
    return "".join(CHARS[i] for i in ids)


# ---------------------------------------------------------------- a state_dict, trained briefly

def train(steps=100, seq_len=32, batch=16, lr=0.01, seed=0):
    """A trained ``state_dict`` (float32) of the LSTM and its head, and the loss per Adam step."""
    rng = np.random.default_rng(seed)
    # the reference backend: nothing to compile, so the script starts quickly
    lstm = lb.LSTM(VOCAB, HIDDEN, dtype=np.float32, backend="numpy", seed=seed)
    state = lstm.state_dict()  # weight_ih_l0 (4H, V), weight_hh_l0 (4H, H), bias_ih_l0, bias_hh_l0 (4H,)
    state["head.weight"] = rng.uniform(-0.1, 0.1, (VOCAB, HIDDEN)).astype(np.float32)
    state["head.bias"] = np.zeros(VOCAB, np.float32)
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in state.items()}
    ids = encode(TEXT * 3)  # the rhyme, repeated so every window has a successor
    one_hot = np.eye(VOCAB, dtype=np.float32)
    losses = []
    for step in range(1, steps + 1):
        window = rng.integers(0, len(TEXT), batch)[None, :] + np.arange(seq_len)[:, None]  # (T, B)
        x, target = one_hot[ids[window]], ids[window + 1]  # (T, B, V), (T, B)
        lstm.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
        y, _, tape = lstm.forward_train(x)  # y: (T, B, H)
        logits = y @ state["head.weight"].T + state["head.bias"]
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        rows = p.reshape(-1, VOCAB)
        losses.append(float(-np.log(rows[np.arange(len(rows)), target.ravel()]).mean()))
        rows[np.arange(len(rows)), target.ravel()] -= 1  # p - one_hot(target): d(sum of losses) / d logits
        d_logits = p / len(rows)
        _, _, grads = lstm.backward(tape, dy=d_logits @ state["head.weight"])  # keys as state_dict's
        grads["head.weight"] = d_logits.reshape(-1, VOCAB).T @ y.reshape(-1, HIDDEN)
        grads["head.bias"] = d_logits.sum(axis=(0, 1))
        for k, g in grads.items():  # Adam
            m, v = moments[k]
            m[...] = 0.9 * m + 0.1 * g
            v[...] = 0.999 * v + 0.001 * g * g
            state[k] -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return state, losses


# ---------------------------------------------------------------- the sampling loop, compiled

@numba.njit(cache=True)
def pick(logits, temperature, probs):
    """The next character: the most likely one at temperature 0, else a draw from the softmax of
    ``logits / temperature`` (``np.random``, seeded by the caller; ``probs`` is scratch)."""
    best = 0
    for v in range(logits.shape[0]):
        if logits[v] > logits[best]:
            best = v
    if temperature == 0.0:
        return best
    total = 0.0
    for v in range(logits.shape[0]):
        total += np.exp((logits[v] - logits[best]) / temperature)
        probs[v] = total  # the cumulative sum
    u = np.random.random() * total  # noqa: NPY002 (Numba's generator, seeded in generate)
    for v in range(logits.shape[0]):
        if u < probs[v]:
            return v
    return logits.shape[0] - 1


@numba.njit(cache=True)
def generate(w, head_w, head_b, prompt, temperature, seed, out, h, c):
    """Prime on ``prompt`` (character ids), then sample ``len(out)`` characters into ``out``.

    ``w``: from ``lj.prepare``; ``head_w`` (V, H), ``head_b`` (V,); ``h``, ``c`` (1, H) are the
    state, updated in place (zeros before the prompt)."""
    np.random.seed(seed)  # noqa: NPY002 (in @njit: Numba's own generator, np.random.RandomState's stream)
    V = head_w.shape[0]
    H = head_w.shape[1]
    T = prompt.shape[0]
    xs = np.zeros((T, 1, V), np.float32)  # the prompt, one-hot
    for t in range(T):
        xs[t, 0, prompt[t]] = 1.0
    ys = np.empty((T, 1, H), np.float32)
    h[:] = 0.0
    c[:] = 0.0
    lj.forward(xs, w, h, c, ys, h, c)  # the whole prompt in one call; h, c updated in place
    x = np.zeros((1, V), np.float32)
    logits = np.empty(V)
    probs = np.empty(V)
    for t in range(out.shape[0]):
        for v in range(V):  # the head, in float64
            acc = np.float64(head_b[v])
            for k in range(H):
                acc += np.float64(head_w[v, k]) * np.float64(h[0, k])
            logits[v] = acc
        tok = pick(logits, temperature, probs)
        out[t] = tok
        x[0, :] = 0.0
        x[0, tok] = 1.0
        lj.cell(x, h, c, w, h, c)  # one step, in place


# ---------------------------------------------------------------- the same loop in Python

def generate_python(params, head_w, head_b, prompt, temperature, seed, out, h, c):
    """``generate`` step for step, in Python: ``Backend.forward`` and ``Backend.cell`` of the numba
    backend, the head and the softmax in NumPy, ``np.random.RandomState(seed)``."""
    be = lb.get_backend("numba")
    rs = np.random.RandomState(seed)
    xs = np.zeros((len(prompt), 1, VOCAB), np.float32)
    xs[np.arange(len(prompt)), 0, prompt] = 1.0
    h[:] = 0.0
    c[:] = 0.0
    be.forward(xs, params, h, c, out=(np.empty((len(prompt), 1, HIDDEN), np.float32), h, c))
    w64, b64 = head_w.astype(np.float64), head_b.astype(np.float64)
    x = np.zeros((1, VOCAB), np.float32)
    for t in range(len(out)):
        logits = w64 @ h[0].astype(np.float64) + b64
        if temperature == 0.0:
            tok = int(np.argmax(logits))
        else:
            cdf = np.cumsum(np.exp((logits - logits.max()) / temperature))
            tok = min(int(np.searchsorted(cdf, rs.random_sample() * cdf[-1], side="right")), VOCAB - 1)
        out[t] = tok
        x[:] = 0.0
        x[0, tok] = 1.0
        be.cell(x, h, c, params, out=(h, c))


def best_time(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    untrained, _ = train(steps=0)
    t0 = time.perf_counter()
    state, losses = train()
    print(f"trained {len(losses)} Adam steps in {time.perf_counter() - t0:.1f} s: cross-entropy "
          f"{losses[0]:.2f} -> {losses[-1]:.2f} nats/char (uniform guess: {np.log(VOCAB):.2f})")

    # a PyTorch state_dict's LSTM weights are LSTMParams as they are (gates i, f, g, o); from a
    # torch model: {k: v.detach().numpy() for k, v in model.state_dict().items()}
    def weights(sd):
        return lb.LSTMParams(sd["weight_ih_l0"], sd["weight_hh_l0"], sd["bias_ih_l0"], sd["bias_hh_l0"])

    params = weights(state)
    w = lj.prepare(params)  # once: packed, read-only, typed by Numba
    head_w, head_b = state["head.weight"], state["head.bias"]
    prompt = encode("twinkle, ")
    h, c = np.zeros((1, HIDDEN), np.float32), np.zeros((1, HIDDEN), np.float32)
    out = np.empty(120, np.int64)

    t0 = time.perf_counter()
    generate(lj.prepare(weights(untrained)), untrained["head.weight"], untrained["head.bias"], prompt, 1.0, 1,
             out, h, c)
    first_call = time.perf_counter() - t0
    print(f"\nuntrained, temperature 1.0:\n{decode(prompt)}{decode(out)}")
    for temperature in (0.0, 0.5, 1.0):
        generate(w, head_w, head_b, prompt, temperature, 1, out, h, c)
        text = decode(prompt) + decode(out)
        # check before timing: the Python loop gives the same characters and bitwise the same state
        out_py, h_py, c_py = np.empty_like(out), np.empty_like(h), np.empty_like(c)
        generate_python(params, head_w, head_b, prompt, temperature, 1, out_py, h_py, c_py)
        assert np.array_equal(out, out_py) and np.array_equal(h, h_py) and np.array_equal(c, c_py), \
            "the compiled loop must give the Python loop's characters and state"
        print(f"\ntrained, temperature {temperature}:\n{text}")

    n = 2000
    long_out = np.empty(n, np.int64)
    t_jit = best_time(lambda: generate(w, head_w, head_b, prompt, 0.5, 2, long_out, h, c))
    t_py = best_time(lambda: generate_python(params, head_w, head_b, prompt, 0.5, 2, long_out, h, c))
    print(f"\ntime per step, one character (H={HIDDEN}, {VOCAB} characters, {n} sampled, best of 3):")
    print(f"  @njit loop (lj.forward + lj.cell)   {t_jit / n * 1e6:8.2f} us   "
          f"(first call: {first_call:.1f} s, compiling or loading from the cache)")
    print(f"  Python loop (Backend.cell)          {t_py / n * 1e6:8.2f} us   ({t_py / t_jit:.0f}x)")


if __name__ == "__main__":
    main()
