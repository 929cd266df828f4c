"""Batch assembly: the time-first layout holds the same values as the channels-first one."""

from __future__ import annotations

import torch


def test_pad_batch_time_first_holds_the_same_values():

    from mse_rt.pipeline.padding import pad_batch

    g = torch.Generator().manual_seed(0)
    vids = [torch.randn(7, 5, generator=g).T, torch.randn(3, 5, generator=g).T]  # (C, T_i) views of (T_i, C)
    a, la = pad_batch(vids, 11)
    b, lb = pad_batch(vids, 11, time_first=True)
    assert torch.equal(a, b) and torch.equal(la, lb) and b.shape == (2, 5, 11)
    assert a.is_contiguous() and not b.is_contiguous() and b.transpose(1, 2).is_contiguous()
    assert torch.equal(b[1, :, 3:], torch.zeros(5, 8))
    # one video that fills the padded length: a view of its own time-first memory, same values
    full = torch.randn(11, 5, generator=g)
    c, lc = pad_batch([full.T], 11, time_first=True)
    d, _ = pad_batch([full.T], 11)
    assert torch.equal(c, d) and lc.tolist() == [11] and c.transpose(1, 2).is_contiguous()
    assert c.data_ptr() == full.data_ptr()
    e, _ = pad_batch([full.T.contiguous()], 11, time_first=True)  # channels-first memory: copied
    assert torch.equal(e, d) and e.data_ptr() != full.data_ptr()
