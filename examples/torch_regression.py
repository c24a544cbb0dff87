# /// script
# dependencies = ["torch"]
# ///
"""A small PyTorch model trained on synthetic data: y = 3x₁ − 2x₂ + 0.5 + noise, fitted by a two-layer network.

Runs in a few seconds on two CPU cores, the same every run (fixed seed, one thread). As a job
(`campusgrid submit examples/torch_regression.py --ram 2 --follow`) it prints the loss going down and writes
`model.txt`; as a function task (`campusgrid cpu --program "$(cat examples/torch_regression.py)"`) `main()` returns
the first and last loss. The worker installs torch from the `dependencies` above into a cached environment.
"""
import os

import torch


def main(epochs=200):
    torch.manual_seed(int(os.environ.get("CAMPUSGRID_SEED", "7")) % 2**31)
    torch.set_num_threads(1)
    x = torch.randn(512, 2)
    y = (3 * x[:, 0] - 2 * x[:, 1] + 0.5 + 0.05 * torch.randn(512)).unsqueeze(1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for epoch in range(epochs):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if epoch % 40 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch:3d}  loss {loss.item():.4f}", flush=True)
    with open("model.txt", "w") as f:
        f.write(f"torch {torch.__version__}\nfirst loss {losses[0]:.6f}\nfinal loss {losses[-1]:.6f}\n")
        for name, value in model.state_dict().items():
            f.write(f"{name} {value.flatten().tolist()}\n")
    return {"torch": torch.__version__, "first_loss": round(losses[0], 6), "final_loss": round(losses[-1], 6)}


if __name__ == "__main__":
    result = main()
    print(f"Trained: loss {result['first_loss']:.4f} -> {result['final_loss']:.4f} (torch {result['torch']})")
