"""Train a 2-layer LSTM with a linear read-out in plain NumPy: gradients from ``backward``,
a few lines of Adam, no deep-learning framework.

The task: echo the input three steps later (``target[t] = x[t - 3]``), which the network can
only solve by remembering.  Run it as a script (it plots the loss when matplotlib is
installed); the documentation executes it to draw its figure.
"""

import numpy as np

import lstm_backends as lb

rng = np.random.default_rng(0)
steps, batch, hidden, delay = 20, 32, 24, 3
backend = lb.get_backend("auto", requires=["backward"])  # the fastest backend that can train
lstm = lb.LSTM(1, hidden, num_layers=2, dtype=np.float64, backend=backend, seed=1)
weights = lstm.state_dict()  # the LSTM's weights under PyTorch's names ...
weights["w_out"] = rng.uniform(-0.2, 0.2, (1, hidden))  # ... and the read-out's
weights["b_out"] = np.zeros(1)
adam = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in weights.items()}


def adam_step(step, grads, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8):
    for k, g in grads.items():
        m, v = adam[k]
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * g * g
        weights[k] -= lr * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + eps)


losses = []
for step in range(1, 201):
    x = rng.standard_normal((steps, batch, 1))
    target = np.zeros_like(x)
    target[delay:] = x[:-delay]
    lstm.load_state_dict({k: v for k, v in weights.items() if not k.endswith("_out")})
    y, _, tape = lstm.forward_train(x)  # y: (T, B, H)
    pred = y @ weights["w_out"].T + weights["b_out"]  # (T, B, 1)
    losses.append(float(((pred - target) ** 2).mean()))
    d_pred = 2 * (pred - target) / pred.size  # d loss / d pred
    _, _, grads = lstm.backward(tape, dy=d_pred @ weights["w_out"])
    grads["w_out"] = d_pred.reshape(-1, 1).T @ y.reshape(-1, hidden)
    grads["b_out"] = d_pred.sum(axis=(0, 1))
    adam_step(step, grads)

print(f"loss: {losses[0]:.3f} at the first step, {losses[-1]:.4f} after {len(losses)}")
assert losses[-1] < 0.1 * losses[0], "the loss must fall"

try:
    import matplotlib.pyplot as plt
except ImportError:  # plotting is optional
    plt = None
if plt is not None:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.semilogy(losses)
    ax.set_xlabel("Adam step")
    ax.set_ylabel("mean squared error")
    ax.set_title(f"2-layer LSTM echoing its input {delay} steps later ({backend.name} backend)")
    fig.tight_layout()
