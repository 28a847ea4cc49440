"""PyTorch against ringtrain's safetensors export, both directions.

  torch_parity.py check MANIFEST.json TOLERANCE
      Each case: {what, model, input, shape, expected, cell, nonlinearity, layers, hidden,
      bidirectional}. Loads the export into one nn.LSTM / nn.GRU / nn.RNN named `rnn` and an
      nn.Linear `head.linear` with load_state_dict(strict=True), runs the input
      ([batch, time, features] float32, raw little-endian) and compares with what ringtrain
      computed. Prints "ok <diff> <what>" per case; exits 1 if any exceeds TOLERANCE.

  torch_parity.py train OUT.safetensors INPUT.bin OUTPUT.bin
      Trains a 2-layer nn.LSTM(3, 5) + nn.Linear(5, 2) for 30 Adam steps on a seeded toy
      regression, writes its state dict as safetensors (rnn.*, head.linear.*), and writes
      a [2, 50, 3] input and the model's [2, 2] prediction on it, for ringtrain to import with
      init_from and compare.
"""
import json
import struct
import sys

import numpy as np
import torch
from torch import nn


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        start, end = info["data_offsets"]
        out[name] = torch.from_numpy(
            np.frombuffer(body[start:end], dtype="<f4").reshape(info["shape"]).copy()
        )
    return out


def write_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


class Forecaster(nn.Module):
    """PyTorch's side of the contract: module `rnn`, head `head.linear` on the last step
    (the backward half of a bidirectional layer read at step 0)."""

    def __init__(self, cell, nonlinearity, features, hidden, layers, bidirectional, outputs):
        super().__init__()
        kwargs = dict(num_layers=layers, bidirectional=bidirectional, batch_first=True)
        if cell == "lstm":
            self.rnn = nn.LSTM(features, hidden, **kwargs)
        elif cell == "gru":
            self.rnn = nn.GRU(features, hidden, **kwargs)
        else:
            self.rnn = nn.RNN(features, hidden, nonlinearity=nonlinearity, **kwargs)
        self.head = nn.Module()
        self.head.linear = nn.Linear(hidden * (2 if bidirectional else 1), outputs)
        self.hidden, self.bidirectional = hidden, bidirectional

    def forward(self, x):
        y, _ = self.rnn(x)
        h = self.hidden
        last = y[:, -1, :h] if not self.bidirectional else torch.cat([y[:, -1, :h], y[:, 0, h:]], 1)
        return self.head.linear(last)


def check(manifest, tolerance):
    torch.set_num_threads(1)
    failed = 0
    for case in json.load(open(manifest)):
        state = read_safetensors(case["model"])
        outputs = state["head.linear.bias"].shape[0]
        features = case["shape"][2]
        m = Forecaster(case["cell"], case["nonlinearity"], features, case["hidden"],
                       case["layers"], case["bidirectional"], outputs).double()
        m.load_state_dict({k: v.double() for k, v in state.items()}, strict=True)
        x = np.fromfile(case["input"], dtype="<f4").reshape(case["shape"])
        with torch.no_grad():
            got = m(torch.from_numpy(x).double()).numpy().reshape(-1)
        expected = np.fromfile(case["expected"], dtype="<f4").astype(np.float64)
        diff = float(np.max(np.abs(got - expected)))
        status = "ok" if diff <= tolerance else "FAIL"
        failed += status != "ok"
        print(f"{status} {diff:.3e} {case['what']}")
    return 1 if failed else 0


def train(out, input_path, output_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    m = Forecaster("lstm", "tanh", 3, 5, 2, False, 2)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    x = torch.randn(16, 50, 3)
    target = torch.stack([x[:, -5:, 0].mean(1), x[:, :, 1].sum(1) * 0.1], 1)
    for _ in range(30):
        opt.zero_grad()
        loss = ((m(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
    write_safetensors(out, m.state_dict())
    probe = torch.randn(2, 50, 3)
    with torch.no_grad():
        y = m(probe)
    probe.numpy().astype("<f4").tofile(input_path)
    y.numpy().astype("<f4").tofile(output_path)
    print(f"trained: loss {loss.item():.4f}")
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], float(sys.argv[3])))
    sys.exit(train(sys.argv[2], sys.argv[3], sys.argv[4]))
