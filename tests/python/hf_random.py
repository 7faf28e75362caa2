"""Random weights for the tiny transformers models of the oracle tests: norm weights
1 + N(0, 0.2^2), biases N(0, 0.1^2), matrices N(0, 1/in) and embeddings N(0, 1), so
that no term of a loss or gradient is trivially zero (transformers' own init leaves
norms at 1 and biases at 0). Draws from torch's global generator, parameter by
parameter in named_parameters order."""
import torch


def randomize(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # RMSNorm and LayerNorm weights of the Llama family
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif p.dim() == 2:
                p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5 if "embed" not in name and "wte" not in name else 1))
    return model
