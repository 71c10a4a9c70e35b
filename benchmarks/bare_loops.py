"""The baseline of the benchmarks: one recipe trained three times, by hand, nothing recorded.

Three bare, idiomatic training loops (NumPy by hand, PyTorch with autograd and
``torch.optim.SGD``, JAX with a jitted ``value_and_grad`` step inside ``lax.scan``) run one after
another, as a user would check the frameworks without crosscheck: no recording, no comparison.
The recipe is the tutorial's family (sigmoid layers without biases, half mean squared error,
full-batch gradient descent) on any bundled data set, widths and step count, with the same data,
split and initial weights as crosscheck draws. Each loop prints its test accuracy so that the
work cannot be skipped.

Usage: ``python benchmarks/bare_loops.py [--dataset iris] [--hidden 2] [--steps 5000]
[--only numpy,torch,jax]``
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn import datasets
from sklearn.model_selection import train_test_split


def load(dataset: str, hidden: tuple[int, ...], seed: int = 10, scale: float = 0.5):
    """Data, split and initial weights exactly as crosscheck's tutorial defaults draw them."""
    bunch = getattr(datasets, f"load_{dataset}")()
    Y = np.eye(len(bunch.target_names))[bunch.target]
    X_train, X_test, Y_train, Y_test = train_test_split(
        np.asarray(bunch.data, dtype=np.float64), Y, test_size=20, random_state=4
    )
    widths = (X_train.shape[1], *hidden, Y.shape[1])
    generator = np.random.RandomState(seed)
    weights = [
        generator.normal(scale=scale, size=(widths[i], widths[i + 1]))
        for i in range(len(widths) - 1)
    ]
    return X_train, X_test, Y_train, Y_test, weights


def accuracy(A, Y):
    return float(np.mean(np.argmax(A, axis=1) == np.argmax(Y, axis=1)))


def numpy_loop(X_train, X_test, Y_train, Y_test, weights, lr, steps):
    def sigmoid(Z):
        return 1 / (1 + np.exp(-Z))

    Ws = [W.copy() for W in weights]
    N = Y_train.size
    with np.errstate(over="ignore"):
        for _ in range(steps):
            activations = [X_train]
            for W in Ws:
                activations.append(sigmoid(activations[-1] @ W))
            delta = (activations[-1] - Y_train) / N * activations[-1] * (1 - activations[-1])
            for layer in reversed(range(len(Ws))):
                gradient = activations[layer].T @ delta
                if layer:
                    A = activations[layer]
                    delta = (delta @ Ws[layer].T) * A * (1 - A)
                Ws[layer] = Ws[layer] - lr * gradient
        A = X_test
        for W in Ws:
            A = sigmoid(A @ W)
    return accuracy(A, Y_test)


def torch_loop(X_train, X_test, Y_train, Y_test, weights, lr, steps):
    import torch

    X = torch.tensor(X_train, dtype=torch.float64)
    Y = torch.tensor(Y_train, dtype=torch.float64)
    Ws = [torch.tensor(W, dtype=torch.float64, requires_grad=True) for W in weights]
    optimizer = torch.optim.SGD(Ws, lr=lr)

    def forward(A):
        for W in Ws:
            A = torch.sigmoid(A @ W)
        return A

    for _ in range(steps):
        optimizer.zero_grad()
        loss = ((forward(X) - Y) ** 2).sum() / (2 * Y.numel())
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return accuracy(forward(torch.tensor(X_test, dtype=torch.float64)).numpy(), Y_test)


def jax_loop(X_train, X_test, Y_train, Y_test, weights, lr, steps):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def forward(Ws, A):
        for W in Ws:
            A = jax.nn.sigmoid(A @ W)
        return A

    def loss(Ws, X, Y):
        return jnp.sum((forward(Ws, X) - Y) ** 2) / (2 * Y.size)

    @jax.jit
    def train(Ws, X, Y):
        def step(Ws, _):
            grads = jax.grad(loss)(Ws, X, Y)
            return [W - lr * dW for W, dW in zip(Ws, grads, strict=True)], None

        return jax.lax.scan(step, Ws, length=steps)[0]

    Ws = train([jnp.asarray(W) for W in weights], jnp.asarray(X_train), jnp.asarray(Y_train))
    return accuracy(np.asarray(forward(Ws, jnp.asarray(X_test))), Y_test)


LOOPS = {"numpy": numpy_loop, "torch": torch_loop, "jax": jax_loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="iris")
    parser.add_argument("--hidden", default="2", help="comma list of hidden widths")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--only", default="numpy,torch,jax")
    args = parser.parse_args()
    hidden = tuple(int(w) for w in args.hidden.split(",") if w)
    X_train, X_test, Y_train, Y_test, weights = load(args.dataset, hidden)
    for name in args.only.split(","):
        result = LOOPS[name](X_train, X_test, Y_train, Y_test, weights, args.lr, args.steps)
        print(name, result, flush=True)


if __name__ == "__main__":
    main()
