"""ToMe (Bolya et al., 2023) inside the `keyframe-tome` student's blocks *(ours)*: after each block's attention,
`r` patch tokens are averaged into their most similar partners (bipartite matching on the attention keys, the
reducer's `bipartite_merge`), and the blocks attend in proportion to how many patches a token stands for. At the
end every patch gets its token back, plus its own residual apart from the token it joined (what the blocks added to
the patch before it was merged), so that patches merged late differ as they did when merged. `redundancy` finds the
frames where ToMe fails, which the student reads another way."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..reduce.tome import bipartite_merge


class TokenMerge:
    """The merging state of N sequences of `prefix` tokens (CLS, registers; never merged) then P patches:
    the size of each current token (patches it stands for), the current token of each original patch (`owner`),
    and each patch's residual apart from that token (`delta`)."""

    def __init__(self, x: torch.Tensor, prefix: int):
        n, length, c = x.shape
        self.prefix = prefix
        self.size = torch.ones(n, length, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
        self.owner = torch.arange(length - prefix, device=x.device).expand(n, -1)
        self.delta = x.new_zeros(n, length - prefix, c)
        self.merged = False

    def bias(self) -> torch.Tensor | None:
        """`(N, 1, 1, L)`: proportional attention, log of each token's size added to the scores of its key; None
        before the first merge (every size one: no bias, so attention keeps its mask-free kernels)."""
        return self.size.log()[:, None, None, :] if self.merged else None

    def merge(self, x: torch.Tensor, keys: torch.Tensor, r: int) -> torch.Tensor:
        """`(N, L, C)` tokens, their keys `(N, heads, L, d)` -> `(N, L - r, C)`."""
        p, n = self.prefix, x.shape[1] - self.prefix
        if r == 0:
            return x
        if r > n // 2:
            raise ValueError(f"ToMe merges at most half of the {n} patch tokens in a block, not {r}: merge fewer "
                             f"or feed larger frames")
        patches = x[:, p:]
        before = self._own(patches)
        pos = self.owner.new_zeros(patches.shape[:2])  # unused: `bipartite_merge` reports where each token went
        merged, size, _, dest = bipartite_merge(patches[:, None], self.size[:, None, p:], pos[:, None], r,
                                                metric=keys[:, :, p:].mean(1)[:, None])
        merged, self.size = merged[:, 0].to(x.dtype), torch.cat([self.size[:, :p], size[:, 0]], dim=1)
        self.owner = dest[:, 0].gather(1, self.owner)
        self.delta = self.delta + before - self._own(merged)
        self.merged = True
        return torch.cat([x[:, :p], merged], dim=1)

    def unmerge(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, L, C)` -> `(N, prefix + P, C)`: each original patch's token plus its own residual."""
        return torch.cat([x[:, :self.prefix], self._own(x[:, self.prefix:]) + self.delta], dim=1)

    def _own(self, patches: torch.Tensor) -> torch.Tensor:
        """`(N, L', C)` current patch tokens -> `(N, P, C)`, each original patch's current token."""
        return patches.gather(1, self.owner[..., None].expand(-1, -1, patches.shape[-1]))


def redundancy(emb: torch.Tensor) -> torch.Tensor:
    """Patch embeddings `(N, C, h, w)` -> `(N,)`: the mean over patches of the cosine to the most similar other patch
    of the same frame. Stochastic textures score low: every patch is unlike the others in pixels, yet alike in the
    keys ToMe matches, so its merges pool tokens the teacher keeps apart."""
    unit = F.normalize(emb.flatten(2).float(), dim=1)
    sim = (unit.transpose(1, 2) @ unit).diagonal_scatter(unit.new_full(unit.shape[::2], -2.0), dim1=1, dim2=2)
    return sim.amax(-1).mean(-1)
