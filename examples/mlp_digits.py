"""An MLP classifier for handwritten digits, trained with mini-batch Adam (or SGD).

The data is scikit-learn's 8x8 digits (1,797 images, shipped with the package: no
download), split 75/25 into train and test sets; `--mnist DIR` reads the MNIST IDX files
(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte, each optionally .gz) from DIR instead. The model is a 3-layer
ReLU MLP with a softmax cross-entropy loss; each epoch shows a progress bar with the
loss and the training accuracy, and the script ends with the test accuracy.

    python examples/mlp_digits.py [--backend numpy|reference|triton] [--epochs 30]
also writes the training graph (forward and gradients) to mlp_digits.svg (--graph).

Data-parallel, on workers started by torchrun (graphc/parallel.py): each step takes a
batch of --batch-size examples per worker, every worker computes the gradients of its
share and they are averaged over the workers before the update:

    torchrun --nproc-per-node 2 examples/mlp_digits.py --data-parallel
"""

import gzip
import os
import sys

import numpy as np
from tqdm import tqdm

import graphc as gc
from example_helpers import accuracy, parser, save_graph

DIGITS_INPUTS, CLASSES = 64, 10

# IDX element types (the third byte of the magic number) -> big-endian NumPy dtype.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels":
               "train-labels-idx1-ubyte", "test_images": "t10k-images-idx3-ubyte",
               "test_labels": "t10k-labels-idx1-ubyte"}


# --- data ------------------------------------------------------------------------------

def load_digits(seed=0, test_fraction=0.25):
    """scikit-learn's 8x8 digits scaled to [0, 1]: (X_train, y_train, X_test, y_test)."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    data = sklearn_digits()
    X = (data.data / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, data.target, test_size=test_fraction, random_state=seed, stratify=data.target)
    return X_train, y_train, X_test, y_test


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzip-compressed when the name ends in .gz):
    2 zero bytes, a type byte, a rank byte, the dims as big-endian int32, then the data."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, rank = np.dtype(IDX_DTYPES[data[2]]), data[3]
    shape = tuple(np.frombuffer(data, ">i4", count=rank, offset=4))
    expected = 4 + 4 * rank + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: dims {shape} need {expected} bytes, the file has {len(data)}")
    return np.frombuffer(data, dtype, offset=4 + 4 * rank).reshape(shape).astype(
        dtype.newbyteorder("="))


def load_mnist(directory: str):
    """MNIST from IDX files in `directory`, images flattened and scaled to [0, 1]."""
    arrays = {key: read_idx(_find(directory, stem)) for key, stem in MNIST_FILES.items()}
    flat = {k: arrays[k].reshape(len(arrays[k]), -1).astype(np.float32) / 255.0
            for k in ("train_images", "test_images")}
    return (flat["train_images"], arrays["train_labels"].astype(np.int64),
            flat["test_images"], arrays["test_labels"].astype(np.int64))


def _find(directory: str, stem: str) -> str:
    # Files are published as train-images-idx3-ubyte and as train-images.idx3-ubyte.
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            path = os.path.join(directory, name + suffix)
            if os.path.exists(path):
                return path
    raise FileNotFoundError(f"no {stem}[.gz] in {directory}")


# --- model and training ----------------------------------------------------------------

def build(n_inputs=DIGITS_INPUTS, hidden=(128, 64), seed=0) -> dict:
    """The classifier's graph (see the graphc.cli.render module for the convention)."""
    x = gc.input("x", ("batch", n_inputs))
    y = gc.input("y", ("batch",), dtype="int64")
    logits, params = gc.nn.mlp(x, [n_inputs, *hidden, CLASSES],
                               rng=np.random.default_rng(seed))
    loss = gc.nn.softmax_cross_entropy(logits, y)
    return {"outputs": [loss, logits], "loss": loss, "logits": logits, "params": params,
            "x": x, "y": y}


# optimizer (a function in gc.optim) -> its default learning rate
OPTIMIZERS = {"adam": 1e-3, "sgd": 0.1}


def train(model, X, y, epochs, batch_size, optimizer, lr, backend, seed=0,
          data_parallel=False):
    """Mini-batch training; returns [(mean loss, training accuracy)] per epoch (of this
    worker's shares, when data_parallel: then a batch is batch_size examples a worker,
    the same permutation on every worker, and the gradients are averaged over them)."""
    loss, logits = model["loss"], model["logits"]
    grads = gc.parallel.data_parallel(loss, model["params"]) if data_parallel else None
    updates = getattr(gc.optim, optimizer)(loss, model["params"], lr=lr, grads=grads)
    step = gc.compile([loss, logits], updates=updates, backend=backend)
    rng = np.random.default_rng(seed)
    workers = gc.parallel.world_size() if data_parallel else 1
    batch_size = min(batch_size * workers, len(X) - len(X) % workers)
    history = []
    for epoch in range(1, epochs + 1):
        # Full batches only: a last batch of a few examples gives a noisy, outsized step
        # (with SGD it can undo an epoch). The reshuffle uses every example over epochs.
        order = rng.permutation(len(X))
        batches = [order[i:i + batch_size] for i in range(0, len(X) - batch_size + 1,
                                                            batch_size)]
        total_loss = correct = seen = 0.0
        quiet = data_parallel and gc.parallel.rank() != 0  # one progress bar per run
        with tqdm(total=len(batches), desc=f"epoch {epoch}/{epochs}", unit="batch",
                  disable=quiet) as bar:
            for batch in batches:
                if data_parallel:
                    batch = gc.parallel.shard(batch)
                batch_loss, batch_logits = step(x=X[batch], y=y[batch])
                total_loss += float(batch_loss) * len(batch)
                correct += accuracy(batch_logits, y[batch]) * len(batch)
                seen += len(batch)
                bar.set_postfix(loss=f"{float(batch_loss):.4f}", refresh=False)
                bar.update()
            history.append((total_loss / seen, correct / seen))
            bar.set_postfix(loss=f"{history[-1][0]:.4f}", accuracy=f"{history[-1][1]:.3f}")
    return history


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30, help="passes over the data (default: 30)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default: 32)")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adam",
                   help="optimizer in gc.optim (default: adam)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 0.001 for adam, 0.1 for sgd)")
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 64],
                   help="hidden layer sizes (default: 128 64)")
    p.add_argument("--mnist", metavar="DIR", help="read MNIST IDX files from DIR")
    p.add_argument("--graph", default="mlp_digits.svg",
                   help="where to draw the training graph; '' to skip (default: %(default)s)")
    p.add_argument("--data-parallel", action="store_true",
                   help="train on the workers torchrun started, gradients averaged over "
                        "them (--batch-size is then per worker)")
    args = p.parse_args(argv)
    lr = args.lr if args.lr is not None else OPTIMIZERS[args.optimizer]
    rank, workers = gc.parallel.init() if args.data_parallel else (0, 1)
    if rank != 0:  # worker 0 speaks for the run
        sys.stdout = open(os.devnull, "w")

    X_train, y_train, X_test, y_test = (load_mnist(args.mnist) if args.mnist
                                        else load_digits(seed=args.seed))
    print(f"{len(X_train)} training and {len(X_test)} test examples of {X_train.shape[1]} "
          f"features; backend {args.backend}")
    model = build(X_train.shape[1], tuple(args.hidden), seed=args.seed)
    if args.data_parallel:
        print(f"data-parallel over {workers} workers, {args.batch_size} examples each a step")
    train(model, X_train, y_train, args.epochs, args.batch_size, args.optimizer, lr,
          args.backend, seed=args.seed, data_parallel=args.data_parallel)
    test_accuracy = accuracy(gc.compile(model["logits"], backend=args.backend)(x=X_test), y_test)
    print(f"test accuracy {test_accuracy:.2%}")
    if args.graph and rank == 0:
        print(f"wrote {save_graph(model['loss'], args.graph, backward=True)}")
    gc.parallel.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
