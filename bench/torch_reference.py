"""The PyTorch reference VAE: the canonical `pytorch/examples` MNIST VAE, trained on CPU.

784-400-(20, 20) encoder (two parallel linear heads: mean, log-variance), 20-400-784
decoder, ReLU, Bernoulli likelihood from logits (BCE-with-logits, summed), analytic KL,
Adam(1e-3), batch 128; the loss is summed over the batch as in the example. The data sit in
one in-memory tensor shuffled each epoch (faster than the example's DataLoader over PIL
images, so the baseline is as strong as we can make it without changing the model).

`--compile` is the same model as a PyTorch user after speed writes it: `torch.compile` on the
forward pass with its loss (AOTAutograd compiles the backward too) and on the optimizer step,
as PyTorch's "compiled optimizer" recipe does; eager PyTorch stays the reference.

Run by `bench.run`; alone: `python -m bench.torch_reference --data D.npz --out r.json`.
"""

from __future__ import annotations

import time

import numpy as np

from bench import common


def reference_model():
    """(model, loss_function): the example's `VAE` module, initialised by torch's global RNG,
    and its loss, BCE-with-logits summed over pixels and batch + analytic KL."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 400)
            self.fc21 = nn.Linear(400, 20)
            self.fc22 = nn.Linear(400, 20)
            self.fc3 = nn.Linear(20, 400)
            self.fc4 = nn.Linear(400, 784)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar):
            std = torch.exp(0.5 * logvar)
            return mu + torch.randn_like(std) * std

        def decode(self, z):  # logits (the example applies sigmoid and uses BCE)
            return self.fc4(F.relu(self.fc3(z)))

        def forward(self, x):
            mu, logvar = self.encode(x)
            return self.decode(self.reparameterize(mu, logvar)), mu, logvar

    def loss_function(logits, x, mu, logvar):
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    return VAE(), loss_function


def elbo_probes(model):
    """numpy `(encode, log_px)` for `common.negative_elbo` around the reference model."""
    import torch
    from torch.nn import functional as F

    @torch.no_grad()
    def encode(xb):
        mu, logvar = model.encode(torch.from_numpy(xb))
        return mu.numpy(), torch.exp(0.5 * logvar).numpy()

    @torch.no_grad()
    def log_px(z, xb):
        logits = model.decode(torch.from_numpy(z))
        return (
            -F.binary_cross_entropy_with_logits(logits, torch.from_numpy(xb), reduction="none")
            .sum(-1)
            .numpy()
        )

    return encode, log_px


def common_weights(model) -> dict:
    """The reference model's parameters as `common.WEIGHT_NAMES` (kernels [in, out])."""
    layers = {"enc": model.fc1, "mu": model.fc21, "logvar": model.fc22}
    layers.update({"dec": model.fc3, "out": model.fc4})
    out = {}
    for name, layer in layers.items():
        out[f"{name}_w"] = layer.weight.detach().numpy().T
        out[f"{name}_b"] = layer.bias.detach().numpy()
    return out


def main(argv=None) -> dict:
    p = common.worker_parser(__doc__.splitlines()[0], weights_out=True)
    p.add_argument("--compile", action="store_true", help="torch.compile forward+loss and Adam")
    p.add_argument("--name", default=None, help="(default: pytorch, or pytorch_compile)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.inter_op)
    except RuntimeError:  # already set in this process (in-process smoke test)
        pass
    torch.manual_seed(args.seed)

    x_train, x_test, eps = common.load_arrays(args.data)
    x = torch.from_numpy(x_train)
    model, loss_function = reference_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=common.LEARNING_RATE)
    generator = torch.Generator().manual_seed(args.seed)
    name = args.name or ("pytorch_compile" if args.compile else "pytorch")
    log = common.EpochLog(name, len(x), args.batch_size, args.threads)
    encode, log_px = elbo_probes(model)

    def batch_loss(xb):
        logits, mu, logvar = model(xb)
        return loss_function(logits, xb, mu, logvar)

    def optimizer_step():
        optimizer.step()

    if args.compile:
        batch_loss = torch.compile(batch_loss)
        optimizer_step = torch.compile(optimizer_step)

    evals = common.eval_epochs(args.eval_at, args.epochs)
    for epoch in range(1, args.epochs + 1):
        model.train()
        start, cpu = time.perf_counter(), time.process_time()
        total = torch.zeros(())
        perm = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), args.batch_size):
            xb = x[perm[i : i + args.batch_size]]
            optimizer.zero_grad()
            loss = batch_loss(xb)
            loss.backward()
            optimizer_step()
            total += loss.detach()
        log.epoch(time.perf_counter() - start, float(total) / len(x), time.process_time() - cpu)
        if epoch in evals:
            model.eval()
            log.evaluation(epoch, common.negative_elbo(x_test, eps, encode, log_px))
    if args.weights_out:
        common.save_weights(args.weights_out, common_weights(model))
    return log.write(
        args.out,
        framework=f"torch {torch.__version__}" + (" (torch.compile)" if args.compile else ""),
        numpy=np.__version__,
    )


if __name__ == "__main__":
    main()
