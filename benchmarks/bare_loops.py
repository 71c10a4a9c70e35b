"""The baseline of the benchmark: the reference recipe trained three times, by hand.

Three bare, idiomatic training loops (NumPy by hand, PyTorch with autograd and
``torch.optim.SGD``, JAX with a jitted ``value_and_grad`` step) run one after another, as a user
would check the frameworks without crosscheck: no recording, no comparison. Each prints its test
accuracy so that the work cannot be skipped.
"""

import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

iris = load_iris()
Y = np.eye(3)[iris.target]
X_train, X_test, Y_train, Y_test = train_test_split(iris.data, Y, test_size=20, random_state=4)
np.random.seed(10)
W1_init = np.random.normal(scale=0.5, size=(4, 2))
W2_init = np.random.normal(scale=0.5, size=(2, 3))
LR, STEPS, N = 0.1, 5000, Y_train.size


def accuracy(A2, Y):
    return float(np.mean(np.argmax(A2, axis=1) == np.argmax(Y, axis=1)))


def numpy_loop():
    def sigmoid(Z):
        return 1 / (1 + np.exp(-Z))

    W1, W2 = W1_init.copy(), W2_init.copy()
    for _ in range(STEPS):
        A1 = sigmoid(X_train @ W1)
        A2 = sigmoid(A1 @ W2)
        delta2 = (A2 - Y_train) * A2 * (1 - A2)
        delta1 = (delta2 @ W2.T) * A1 * (1 - A1)
        W2 = W2 - LR * A1.T @ delta2 / N
        W1 = W1 - LR * X_train.T @ delta1 / N
    return accuracy(sigmoid(sigmoid(X_test @ W1) @ W2), Y_test)


def torch_loop():
    import torch

    X = torch.tensor(X_train, dtype=torch.float64)
    Yt = torch.tensor(Y_train, dtype=torch.float64)
    W1 = torch.tensor(W1_init, dtype=torch.float64, requires_grad=True)
    W2 = torch.tensor(W2_init, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([W1, W2], lr=LR)
    for _ in range(STEPS):
        optimizer.zero_grad()
        A2 = torch.sigmoid(torch.sigmoid(X @ W1) @ W2)
        loss = ((A2 - Yt) ** 2).sum() / (2 * Yt.numel())
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        A2 = torch.sigmoid(torch.sigmoid(torch.tensor(X_test) @ W1) @ W2)
    return accuracy(A2.numpy(), Y_test)


def jax_loop():
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def forward(params, X):
        return jax.nn.sigmoid(jax.nn.sigmoid(X @ params["W1"]) @ params["W2"])

    def loss(params, X, Y):
        return jnp.sum((forward(params, X) - Y) ** 2) / (2 * Y.size)

    @jax.jit
    def step(params, X, Y):
        grads = jax.grad(loss)(params, X, Y)
        return jax.tree.map(lambda W, dW: W - LR * dW, params, grads)

    params = {"W1": jnp.asarray(W1_init), "W2": jnp.asarray(W2_init)}
    X, Yj = jnp.asarray(X_train), jnp.asarray(Y_train)
    for _ in range(STEPS):
        params = step(params, X, Yj)
    return accuracy(np.asarray(forward(params, jnp.asarray(X_test))), Y_test)


if __name__ == "__main__":
    print("numpy", numpy_loop(), "torch", torch_loop(), "jax", jax_loop())
