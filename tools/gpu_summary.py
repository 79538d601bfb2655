"""The Markdown summary of a ``make gpu-check`` run, rewritten after every step: the
machine as the probe saw it, one row per step (done, running, not reached), the tests that
did not pass and the last lines of every step that failed or ran out of time."""

from __future__ import annotations

import time

JPEG_WARNING = ("**JPEG decoding on the GPU is not proven**: libnvjpeg was not mapped after a "
                "`mixed` decode, or nvImageCodec's CUDA decoder alone did not decode (or the "
                "probe did not get that far). DALI may then decode JPEG on the CPU without "
                "saying so: every JPEG result below is marked \"not decoded on the GPU\" and "
                "proves nothing about nvJPEG.")


def machine(probe: dict | None) -> list[str]:
    """The probe's findings in a few lines (or why there are none)."""
    if not probe:
        return ["The environment probe has not reported (yet)."]
    gpu, versions = probe.get("gpu", {}), probe.get("versions", {})
    decode, compiler = probe.get("decode", {}), probe.get("compiler")
    names = ", ".join(gpu.get("names", [])) or gpu.get("error", "?")
    lines = [f"- GPU: {names} ({gpu.get('count', '?')} visible), driver "
             f"{probe.get('driver', {}).get('version', '?')}, CUDA {gpu.get('cuda', '?')} "
             f"(PyTorch's), cuDNN {gpu.get('cudnn', '?')}, NCCL {gpu.get('nccl', '?')}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())]
    if compiler:
        lines.append("- torch.compile: " + (compiler.get("missing") or compiler.get("error")
                                            or "a C compiler and Python.h are there"))
    codec = probe.get("codec", {})
    if decode.get("gpu_decoded"):
        lines.append(f"- JPEG decoded on the GPU: yes (libnvjpeg mapped; nvImageCodec's CUDA "
                     f"decoder alone: {codec.get('GPU_ONLY')}, hardware engine alone: "
                     f"{codec.get('HW_GPU_ONLY')}); {decode.get('max_difference', '?')} grey "
                     f"levels at most from libjpeg-turbo, {decode.get('mean_difference', '?')} "
                     "on average")
    elif decode:
        found = decode.get("error") or (f"libnvjpeg mapped: {decode.get('libnvjpeg_mapped')}; "
                                        f"nvImageCodec's CUDA decoder alone: "
                                        f"{codec.get('GPU_ONLY', 'not tried')}")
        lines += ["", f"{JPEG_WARNING} ({found})"]
    return lines


def _details(outcome) -> str:
    found = [", ".join(f"{n} {k}" for k, n in sorted(outcome.counts.items()))]
    if outcome.status == "failed" and outcome.returncode is not None:
        found.append(f"exit code {outcome.returncode}")
    return "; ".join(part for part in [*found, outcome.reason] if part)


def steps(results, running) -> list[str]:
    lines = ["| # | step | status | seconds | budget | details |", "|---|---|---|---|---|---|"]
    done = {o.step: o for o in results.outcomes}
    for number, step in enumerate(results.plan, 1):
        name = ("(if time is left) " if step.extra else "") + step.name
        outcome = done.get(step.name)
        if outcome:
            killed = f"; {outcome.killed} leftover process(es) killed" if outcome.killed else ""
            lines.append(f"| {number} | {name} | {outcome.status} | {outcome.seconds:.0f} | "
                         f"{step.budget:.0f} | {_details(outcome)}{killed} |")
        else:
            status = "running…" if running is step else "not reached"
            lines.append(f"| {number} | {name} | {status} | | {step.budget:.0f} | |")
    return lines


def problems(results) -> list[str]:
    """Tests that did not pass, and the last lines of steps that failed or ran out."""
    lines = []
    for outcome in results.outcomes:
        bad = {t: r for t, r in outcome.tests.items() if not r.startswith("passed")}
        if bad or outcome.tail:
            lines += [f"### {outcome.step}: {outcome.status}", ""]
            if bad:
                lines += [*(f"- `{test}`: {result}" for test, result in bad.items()), ""]
            if outcome.tail:
                lines += ["```text", *outcome.tail, "```", ""]
    return lines


def markdown(results, running=None) -> str:
    elapsed = time.monotonic() - results.start
    text = [f"# make gpu-check — {results.stem}", "",
            f"Started {results.started}; budget {results.budget:.0f} s; {elapsed:.0f} s "
            f"elapsed; {len(results.outcomes)} of {len(results.plan)} steps done. One JSON line "
            f"per step: `{results.jsonl.name}`; every step's output: `{results.log.name}`.", "",
            "## Machine", "", *machine(results.probe), "", "## Steps", "",
            *steps(results, running), ""]
    found = problems(results)
    if found:
        text += ["## What did not pass", "", *found]
    return "\n".join(text) + "\n"
