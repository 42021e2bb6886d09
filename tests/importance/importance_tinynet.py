"""A timm-like tiny model shared by the importance tests (imported by name, like tests/atlas/atlas_fakerun.py)."""
import torch


class TinyNet(torch.nn.Module):
    """forward_features (conv, ReLU: (B, d, H, W) >= 0) / forward_head (mean pool -> [Linear+GELU] -> classifier).

    ``linear_head=True`` drops the hidden layer, so that the head is global average pooling + linear.
    Every parameter is drawn from N(0, 0.25) with a generator seeded by ``seed``.
    """

    def __init__(self, d: int, n_classes: int, linear_head: bool = False, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, d, 3, stride=4, padding=1)
        self.mlp = torch.nn.Identity() if linear_head else torch.nn.Sequential(torch.nn.Linear(d, 8), torch.nn.GELU())
        self.classifier = torch.nn.Linear(d if linear_head else 8, n_classes)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=gen) * 0.5

    def forward_features(self, x):
        return torch.relu(self.conv(x))

    def forward_head(self, a):
        return self.classifier(self.mlp(a.mean(dim=(2, 3))))

    def get_classifier(self):
        return self.classifier

    def forward(self, x):
        return self.forward_head(self.forward_features(x))
