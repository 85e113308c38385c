"""ONNX's activation functions for the LSTM gates, and their parsing (the ``activations=`` option).

An LSTM applies three functions: ``f`` to the gates ``i``, ``f``, ``o`` (default
``Sigmoid``), ``g`` to the cell candidate (default ``Tanh``) and ``h`` to the cell state
before the output gate (default ``Tanh``).  ONNX lets a model choose each from the list
below; ``alpha``/``beta`` default to those of the ONNX operator of the same name.

================  =====================================  ===============
name              value                                  default alpha, beta
================  =====================================  ===============
Relu              max(0, x)
Tanh              tanh(x)
Sigmoid           1 / (1 + e^-x)
Affine            alpha * x + beta                       1.0, 0.0
LeakyRelu         x if x >= 0 else alpha * x             0.01
ThresholdedRelu   x if x > alpha else 0                  1.0
ScaledTanh        alpha * tanh(beta * x)                 1.0, 1.0
HardSigmoid       min(max(alpha * x + beta, 0), 1)       0.2, 0.5
Elu               x if x >= 0 else alpha * (e^x - 1)     1.0
Softsign          x / (1 + |x|)
Softplus          log(1 + e^x)
================  =====================================  ===============

Only the NumPy reference implements the non-default functions (capability
``activations``); other backends refuse them with an error naming the function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["DEFAULT_ACTIVATIONS", "Activation", "apply_activation", "describe_activations", "normalize_activations",
           "onnx_activations"]


class Activation(NamedTuple):
    """One activation function with its parameters (``None`` where it takes none).

    Attributes
    ----------
    name : str
        ONNX spelling, e.g. ``"HardSigmoid"``.
    alpha, beta : float or None
    """

    name: str
    alpha: float | None = None
    beta: float | None = None

    def __str__(self) -> str:
        args = [f"{k}={v:g}" for k, v in (("alpha", self.alpha), ("beta", self.beta)) if v is not None]
        return f"{self.name}({', '.join(args)})" if args else self.name


# lower-case name -> (ONNX spelling, default alpha or None if unused, default beta or None if unused)
_SPECS: dict[str, tuple[str, float | None, float | None]] = {
    "relu": ("Relu", None, None),
    "tanh": ("Tanh", None, None),
    "sigmoid": ("Sigmoid", None, None),
    "affine": ("Affine", 1.0, 0.0),
    "leakyrelu": ("LeakyRelu", 0.01, None),
    "thresholdedrelu": ("ThresholdedRelu", 1.0, None),
    "scaledtanh": ("ScaledTanh", 1.0, 1.0),
    "hardsigmoid": ("HardSigmoid", 0.2, 0.5),
    "elu": ("Elu", 1.0, None),
    "softsign": ("Softsign", None, None),
    "softplus": ("Softplus", None, None),
}

#: ``(f, g, h)`` of a plain LSTM.
DEFAULT_ACTIVATIONS: tuple[Activation, Activation, Activation] = (
    Activation("Sigmoid"), Activation("Tanh"), Activation("Tanh"))


def _spec(name: Any) -> tuple[str, float | None, float | None]:
    if not isinstance(name, str) or name.lower() not in _SPECS:
        known = ", ".join(s[0] for s in _SPECS.values())
        raise ValueError(f"unknown activation {name!r}; known: {known}")
    return _SPECS[name.lower()]


def _one(entry: Any, role: str) -> Activation:
    """An :class:`Activation` from a name, ``(name, alpha)``, ``(name, alpha, beta)`` or an Activation."""
    if isinstance(entry, str):
        name, alpha, beta = entry, None, None
    elif isinstance(entry, (tuple, list)) and 1 <= len(entry) <= 3 and isinstance(entry[0], str):
        name, alpha, beta = (*entry, None, None)[:3]
    else:
        raise TypeError(f"activation {role} must be a name such as 'HardSigmoid' or a tuple (name, alpha[, beta]); "
                        f"got {entry!r}")
    spelled, default_alpha, default_beta = _spec(name)
    if alpha is not None and default_alpha is None:
        raise ValueError(f"activation {role} = {spelled} takes no alpha; got alpha={alpha!r}")
    if beta is not None and default_beta is None:
        raise ValueError(f"activation {role} = {spelled} takes no beta; got beta={beta!r}")
    return Activation(spelled, None if default_alpha is None else float(default_alpha if alpha is None else alpha),
                      None if default_beta is None else float(default_beta if beta is None else beta))


def normalize_activations(activations: Any) -> tuple[Activation, Activation, Activation] | None:
    """Check and normalize an ``activations=`` option.

    Parameters
    ----------
    activations : None or sequence of 3 entries
        ``(f, g, h)``, each a name (``"HardSigmoid"``, any case), ``(name, alpha)`` or
        ``(name, alpha, beta)``; omitted parameters take the ONNX defaults.

    Returns
    -------
    tuple of 3 Activation, or None
        ``None`` for the defaults (``Sigmoid, Tanh, Tanh``), so the plain kernels run.

    Raises
    ------
    ValueError
        Unknown name, wrong count, or a parameter the function does not take.
    """
    if activations is None:
        return None
    if isinstance(activations, str) or not isinstance(activations, Sequence) or len(activations) != 3:
        raise ValueError("activations must be a sequence of 3 functions (f, g, h), e.g. "
                         f"('Sigmoid', 'Tanh', 'Tanh'); got {activations!r}")
    acts = tuple(_one(a, role) for a, role in zip(activations, ("f", "g", "h")))
    return None if acts == DEFAULT_ACTIVATIONS else acts  # type: ignore[return-value]


def describe_activations(acts: Sequence[Activation] | None) -> str:
    """``"f=HardSigmoid(alpha=0.2, beta=0.5), g=Tanh, h=Tanh"`` (for error messages)."""
    acts = DEFAULT_ACTIVATIONS if acts is None else acts
    return ", ".join(f"{role}={a}" for role, a in zip(("f", "g", "h"), acts))


def apply_activation(act: Activation, x: np.ndarray) -> np.ndarray:
    """``act`` applied to ``x`` element-wise, in the dtype of ``x`` (no overflow warnings).

    Parameters
    ----------
    act : Activation
    x : ndarray

    Returns
    -------
    ndarray
        A new array of the shape and dtype of ``x``.
    """
    name, alpha, beta = act
    dt = x.dtype.type
    if name == "Sigmoid":
        from scipy.special import expit  # overflow-free; imported here so the package import stays light

        return expit(x)
    if name == "Tanh":
        return np.tanh(x)
    if name == "Relu":
        return np.maximum(x, dt(0))
    if name == "Affine":
        return dt(alpha) * x + dt(beta)
    if name == "LeakyRelu":
        return np.where(x >= 0, x, dt(alpha) * x)
    if name == "ThresholdedRelu":
        return np.where(x > dt(alpha), x, dt(0))
    if name == "ScaledTanh":
        return dt(alpha) * np.tanh(dt(beta) * x)
    if name == "HardSigmoid":
        return np.clip(dt(alpha) * x + dt(beta), dt(0), dt(1))
    if name == "Elu":
        return np.where(x >= 0, x, dt(alpha) * np.expm1(np.minimum(x, dt(0))))
    if name == "Softsign":
        return x / (dt(1) + np.abs(x))
    if name == "Softplus":
        return np.logaddexp(dt(0), x)
    raise ValueError(f"unknown activation {name!r}")  # normalize_activations lets none through


def onnx_activations(names: Sequence[str], alphas: Sequence[float], betas: Sequence[float],
                     num_directions: int) -> list[tuple[Activation, Activation, Activation] | None]:
    """The activations of an ONNX ``LSTM`` node, per direction.

    ``activation_alpha`` and ``activation_beta`` are consumed in the order of the functions,
    each only by the functions that take that parameter (as onnxruntime does); a function
    whose values run out takes its ONNX default.

    Parameters
    ----------
    names : sequence of str
        The ``activations`` attribute: empty, or ``3 * num_directions`` names.
    alphas, betas : sequence of float
    num_directions : int

    Returns
    -------
    list of (tuple of 3 Activation or None), one per direction
        ``None`` for the defaults.
    """
    if not names:
        return [None] * num_directions
    if len(names) != 3 * num_directions:
        raise ValueError(f"activations lists {len(names)} functions; expected {3 * num_directions} "
                         f"(f, g, h for each of {num_directions} direction(s))")
    alpha_iter, beta_iter = iter(alphas), iter(betas)
    acts = []
    for name in names:
        spelled, default_alpha, default_beta = _spec(name)
        alpha = None if default_alpha is None else float(next(alpha_iter, default_alpha))
        beta = None if default_beta is None else float(next(beta_iter, default_beta))
        acts.append(Activation(spelled, alpha, beta))
    per_dir = [tuple(acts[3 * d: 3 * d + 3]) for d in range(num_directions)]
    return [None if a == DEFAULT_ACTIVATIONS else a for a in per_dir]  # type: ignore[misc]
