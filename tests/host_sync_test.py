#!/usr/bin/env python3
"""Note [No host sync in a step] (core/dsm_trainer.h), mechanically: no function a training step
runs reads a device value on the host.

On a GPU, `.item()`, `.cpu()`, `data_ptr`/`accessor`, `.to(kCPU)`, LibTorch's clip_grad_norm_
(it calls .item()) and an explicit synchronize each stall the host until the device queue is
empty, so the next step cannot be queued behind the running one. The step is: the batch
(JobSetup::TrainBatch), the loss of every forward process (DSM dense and diagonal, VSMD,
forecasting), the score network and its models, the gradient all-reduce, the optimiser step with
gradient clipping and the EMA. The round loop reads its figures once, after the last step
(trainer_rank.cc, between the `[step loop]` markers, is checked too).

On a CUDA build, tests/worker/train/gpu_step_test.cc checks the same at run time with CUDA's
sync debug mode set to error. This test is the CPU machines' check, and CI's.

usage: host_sync_test.py SOURCE_DIR      (exit 1 naming file:line and the call)
       host_sync_test.py --self-test      (the checker finds a planted .item())
"""
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from function_lengths import strip  # noqa: E402  (comments and strings blanked, newlines kept)

FORBIDDEN = [
    (re.compile(r"\.item\s*(<[^>]*>)?\s*\("), ".item()"),
    (re.compile(r"\.cpu\s*\("), ".cpu()"),
    (re.compile(r"\bdata_ptr\b"), "data_ptr"),
    (re.compile(r"\baccessor\s*<"), "accessor<>"),
    (re.compile(r"\bkCPU\b"), "a copy to the CPU (kCPU)"),
    (re.compile(r"\bclip_grad_norm_\b"), "clip_grad_norm_ (reads the norm with .item())"),
    (re.compile(r"\bsynchronize\s*\("), "synchronize()"),
    (re.compile(r"\bis_nonzero\s*\(|\bnonzero\s*\("), "nonzero() (its size is read on the host)"),
    (re.compile(r"\bequal\s*\(|\ballclose\s*\("), "equal()/allclose() (a host bool)"),
]

# (file, function-name pattern): every definition of a matching function is checked whole.
STEP_FUNCTIONS = [
    ("core/dsm_trainer.cc", r"MakeDsmPair|DsmLoss|DsmTrainer::Loss|DsmTrainer::ComputeGradients|"
                            r"DsmTrainer::ApplyGradients|ClipGradNorm"),
    ("core/score_model.cc", r"ScoreModel::OutputAtIndices"),
    ("core/score_net.cc", r"ScoreNetImpl::(TimeFeatures|ForwardFeatures|TimeFeaturesImpl|ForwardFeaturesImpl|"
                          r"ForecastForward|forward)"),
    ("core/unet.cc", r"forward|TimeEmbedding|Normed"),
    ("core/diagonal_process.cc", r"Noise|DiagonalScoreModel::OutputAtIndices|DiagonalDsmLoss|Loss"),
    ("core/momentum.cc", r"MomentumNetOutput|MomentumPerturb|MomentumLoss|VelocityNoise|PairsToState"),
    ("core/forecast_process.cc", r"Loss"),
    ("core/process.cc", r"Loss"),
    ("core/toy_data.cc", r"ToyDataset::Sample|Sample\w*"),
    ("worker/train/data_parallel.cc", r"GradientBuckets::AllReduce"),
]
# Regions between markers (comments in the source): `// [step loop] begin` ... `// [step loop] end`.
STEP_REGIONS = ["worker/train/trainer_rank.cc", "worker/train/standalone_job.cc"]


def closing(text, start, open_ch, close_ch):
    """The index of the bracket that closes the one at `start` (len(text) when unbalanced)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_ch:
            depth += 1
        elif text[i] == close_ch:
            depth -= 1
            if depth == 0:
                return i
    return len(text)


def functions(text, name_re):
    """(start line, body) of every top-level or member function definition whose name matches."""
    out = []
    pat = re.compile(r"(?:^|[\s*&:])((?:\w+::)*(?:" + name_re + r"))\s*\(", re.M)
    for m in pat.finditer(text):
        # The definition: the matching ')' then qualifiers, then '{' before any ';'.
        i = closing(text, m.end() - 1, "(", ")")
        j = i + 1
        while j < len(text) and text[j] not in "{;":
            j += 1
        if j >= len(text) or text[j] != "{":
            continue
        head = text[i + 1:j]
        if "=" in head and "override" not in head and ":" not in head:  # an initialiser, not a body
            continue
        k = closing(text, j, "{", "}")
        out.append((text.count("\n", 0, m.start(1)) + 1, text[m.start(1):k + 1]))
    return out


def regions(raw, text):
    out = []
    begin = None
    for n, line in enumerate(raw.split("\n"), 1):
        if "[step loop] begin" in line:
            begin = n
        elif "[step loop] end" in line and begin is not None:
            body = "\n".join(text.split("\n")[begin - 1:n])
            out.append((begin, body))
            begin = None
    return out


def violations(path, chunks):
    found = []
    for start, body in chunks:
        for off, line in enumerate(body.split("\n")):
            for rx, what in FORBIDDEN:
                if rx.search(line):
                    found.append(f"{path}:{start + off}: {what} in a training step: {line.strip()}")
    return found


def check(src):
    problems, checked = [], 0
    for rel, name_re in STEP_FUNCTIONS:
        raw = open(os.path.join(src, rel)).read()
        chunks = functions(strip(raw), name_re)
        if not chunks:
            problems.append(f"{rel}: no function matching {name_re} (renamed? update tests/host_sync_test.py)")
        checked += len(chunks)
        problems += violations(rel, chunks)
    for rel in STEP_REGIONS:
        raw = open(os.path.join(src, rel)).read()
        chunks = regions(raw, strip(raw))
        if not chunks:
            problems.append(f"{rel}: no '[step loop] begin/end' markers")
        checked += len(chunks)
        problems += violations(rel, chunks)
    return problems, checked


def self_test():
    planted = """#include "x.h"
torch::Tensor DsmLoss(int a) {
  // a comment may say .item() freely
  return x.sum().item<double>();
}
double Other() { return y.item<double>(); }
"""
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "core"))
        with open(os.path.join(d, "core", "dsm_trainer.cc"), "w") as f:
            f.write(planted)
        chunks = functions(strip(planted), "DsmLoss")
        found = violations("core/dsm_trainer.cc", chunks)
    assert len(chunks) == 1, chunks
    assert len(found) == 1 and ":4:" in found[0], found
    print("self-test ok: the planted .item() found, the comment and the unchecked function ignored")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    self_test()
    problems, checked = check(sys.argv[1])
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"ok: {checked} step functions and loops read nothing from the device on the host")
    return 0


if __name__ == "__main__":
    sys.exit(main())
