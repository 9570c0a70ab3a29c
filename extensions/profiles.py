"""Server profiles: what a user can pick on the spawn page (CPU, 1 GPU, 2 GPUs, ...).

The same list configures the local spawner and the Kubernetes chart.
"""

from __future__ import annotations

import re
from typing import Any

PROFILE_KEYS = {
    "slug": "short identifier used in URLs and the API (letters, digits, '-')",
    "display_name": "name shown on the spawn page",
    "description": "one line shown under the name",
    "gpus": "number of GPUs handed out exclusively to the server (integer >= 0)",
    "cpu": "CPU limit in cores (number > 0)",
    "memory": "memory limit, e.g. '8G'",
    "default": "true for the profile selected by default",
    "idle_timeout": "seconds without activity after which the server is stopped (0: never; "
    "default Workbench.idle_timeout, or Workbench.gpu_idle_timeout for GPU profiles)",
    "gpu_type": "GPU model to schedule on, Kubernetes only (node label value, e.g. "
    "'NVIDIA-A100-SXM4-40GB'); needs gpus >= 1",
}
_SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_MEMORY = re.compile(r"^\d+(\.\d+)?[KMGT]$")


class ProfileError(ValueError):
    """A profile list that cannot be used; the message names the key and the fix."""


def default_profiles(gpu_count: int) -> list[dict[str, Any]]:
    """CPU, then one profile per GPU count the inventory can satisfy."""
    profiles = [
        {
            "slug": "cpu",
            "display_name": "CPU",
            "description": "JupyterLab on CPU only",
            "gpus": 0,
            "default": True,
        }
    ]
    for n in range(1, gpu_count + 1):
        profiles.append(
            {
                "slug": f"gpu-{n}",
                "display_name": f"{n} GPU" + ("s" if n > 1 else ""),
                "description": f"JupyterLab with {n} dedicated GPU" + ("s" if n > 1 else ""),
                "gpus": n,
            }
        )
    return profiles


def validate_profiles(profiles: list[Any], key: str = "profiles") -> list[dict[str, Any]]:
    """Check a profile list and fill defaults; raise ProfileError naming every problem."""
    problems: list[str] = []
    seen: set[str] = set()
    result = []
    if not profiles:
        raise ProfileError(f"{key} is empty: configure at least one profile (e.g. CPU).")
    for i, raw in enumerate(profiles):
        where = f"{key}[{i}]"
        if not isinstance(raw, dict):
            problems.append(f"{where} must be a dict with keys {sorted(PROFILE_KEYS)}")
            continue
        for k in sorted(set(raw) - set(PROFILE_KEYS)):
            problems.append(f"{where}: unknown key {k!r}; valid keys: {', '.join(PROFILE_KEYS)}")
        slug = raw.get("slug")
        if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
            problems.append(f"{where}.slug={slug!r}: {PROFILE_KEYS['slug']}, e.g. 'gpu-1'")
        elif slug in seen:
            problems.append(f"{where}.slug={slug!r} is used twice; slugs must be unique")
        else:
            seen.add(slug)
        gpus = raw.get("gpus", 0)
        if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
            problems.append(f"{where}.gpus={gpus!r}: {PROFILE_KEYS['gpus']}")
        cpu = raw.get("cpu")
        if cpu is not None and (not isinstance(cpu, int | float) or cpu <= 0):
            problems.append(f"{where}.cpu={cpu!r}: {PROFILE_KEYS['cpu']}")
        memory = raw.get("memory")
        if memory is not None and not (isinstance(memory, str) and _MEMORY.fullmatch(memory)):
            problems.append(f"{where}.memory={memory!r}: {PROFILE_KEYS['memory']}")
        gpu_type = raw.get("gpu_type")
        if gpu_type is not None and (not isinstance(gpu_type, str) or not gpu_type or not gpus):
            problems.append(f"{where}.gpu_type={gpu_type!r}: {PROFILE_KEYS['gpu_type']}")
        idle = raw.get("idle_timeout")
        if idle is not None and (not isinstance(idle, int) or isinstance(idle, bool) or idle < 0):
            problems.append(f"{where}.idle_timeout={idle!r}: {PROFILE_KEYS['idle_timeout']}")
        profile = {"display_name": slug, "description": "", "gpus": 0, "default": False}
        profile.update(raw)
        result.append(profile)
    if problems:
        raise ProfileError("Invalid profiles:\n  " + "\n  ".join(problems))
    if not any(p["default"] for p in result):
        result[0]["default"] = True
    return result


def find_profile(profiles: list[dict[str, Any]], slug: str) -> dict[str, Any]:
    """The profile named ``slug``, or a ProfileError listing the choices."""
    for profile in profiles:
        if profile["slug"] == slug:
            return profile
    choices = ", ".join(p["slug"] for p in profiles)
    raise ProfileError(f"No such profile: {slug!r}. Options include: {choices}")
