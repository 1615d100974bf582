"""How busy the GPUs are while a sweep's fine-tunes share them (issue #29).

Many short fine-tunes on one GPU can leave it idle between kernels (start-up, data loading, the
Python of each step). :class:`BusySampler` reads each GPU's utilisation (NVML's "percent of the
last sample period in which a kernel was running", through ``nvidia-smi``) every ``interval``
seconds in a background thread of the sweep, and summarises it as the fraction of the sweep's
samples the GPU was busy. Without a GPU or a way to read it, nothing is sampled and the summary
is None: no measurement, not a measurement of zero.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from typing import Callable

# Reads {device: percent busy} once, or None where the utilisation cannot be read here.
Reader = Callable[[], "dict[str, float] | None"]


def nvidia_smi_reader(devices: list[str]) -> Reader | None:
    """A reader of ``devices`` (as ``CUDA_VISIBLE_DEVICES`` names them: indices or UUIDs) through
    ``nvidia-smi``; None where there is no nvidia-smi."""
    if not devices or shutil.which("nvidia-smi") is None:
        return None

    def read() -> dict[str, float] | None:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return parse_nvidia_smi(out, devices)

    return read


def parse_nvidia_smi(out: str, devices: list[str]) -> dict[str, float] | None:
    """{device: percent} of ``devices`` from nvidia-smi's ``index, uuid, utilization.gpu`` rows
    (a device named by its index or its UUID); None if a device is missing or reads "[N/A]"."""
    rows = {}
    for line in out.strip().splitlines():
        index, uuid, busy = (field.strip() for field in line.split(","))
        rows[index] = rows[uuid] = busy
    try:
        return {device: float(rows[device]) for device in devices}
    except (KeyError, ValueError):
        return None


class BusySampler:
    """A background thread sampling ``read`` every ``interval`` seconds while the ``with`` block
    runs; :meth:`summary` is what it measured."""

    def __init__(self, read: Reader | None, interval: float = 1.0):
        self.read, self.interval = read, interval
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="gpu-busy-sampler", daemon=True)
        self._seconds = 0.0

    def __enter__(self) -> "BusySampler":
        self._start = time.perf_counter()
        if self.read is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._seconds = time.perf_counter() - self._start

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            sample = self.read()
            if sample is not None:
                self.samples.append(sample)

    def summary(self) -> dict | None:
        """{"busy": mean fraction over devices and samples, "busy_by_device", "samples",
        "interval_s", "seconds"}; None when nothing was sampled."""
        if not self.samples:
            return None
        devices = sorted(self.samples[0])
        by_device = {d: sum(s[d] for s in self.samples) / len(self.samples) / 100 for d in devices}
        return {"busy": sum(by_device.values()) / len(by_device), "busy_by_device": by_device,
                "samples": len(self.samples), "interval_s": self.interval, "seconds": round(self._seconds, 1)}  # fmt: skip


def busy_line(name: str, summary: dict | None) -> str:
    """One line for the sweep's output."""
    if summary is None:
        return f"{name}: GPU busy fraction not measured (no GPU, or no nvidia-smi to read it)"
    devices = ", ".join(f"GPU {d} {100 * b:.0f}%" for d, b in summary["busy_by_device"].items())
    return (f"{name}: GPU busy {100 * summary['busy']:.0f}% of {summary['seconds']:.0f} s of fine-tuning "
            f"({devices}; {summary['samples']} samples every {summary['interval_s']:g} s)")  # fmt: skip
