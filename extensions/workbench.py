"""Workbench settings shared by the CLI, the hub configuration and the hubforge service.

One traitlets class, ``Workbench``, describes where the workbench keeps its data, where it
listens, which GPUs it owns and which profiles users may pick. Settings come from a traitlets
config file (``hubforge_config.py``) and, for the CLI's options, from environment variables
read in ``@default`` methods.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from traitlets import Bool, Float, Integer, List, TraitError, Unicode, default, validate
from traitlets.config import Config, Configurable, JSONFileConfigLoader, PyFileConfigLoader

from .profiles import ProfileError, default_profiles, validate_profiles

SOURCE_TREE = Path(__file__).resolve().parent.parent
PATH_SAFE = "/-._~!$&'()*+,;=:@"


def detect_gpus() -> list[str]:
    """GPU indices listed by ``nvidia-smi -L``; empty when there is no NVIDIA driver."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [
        line.split(":", 1)[0].split()[1]
        for line in out.splitlines()
        if line.startswith("GPU ") and ":" in line
    ]


def normalize_base_url(value: str) -> str:
    """One canonical spelling of a URL prefix, always starting and ending with '/'.

    Characters a path may hold stay literal ('@'), others are %-escaped (' ' -> '%20'):
    HTTP clients turn '%40' into '@', so a hub routing on '%40' never matches their requests.
    """
    if not value.startswith("/"):
        raise TraitError(f"Workbench.base_url={value!r} must start with '/', e.g. '/hub/'")
    value = quote(unquote(value), safe=PATH_SAFE)
    return value if value.endswith("/") else value + "/"


ROOT_DATA_DIR = "/var/lib/hubforge"


def default_data_dir() -> str:
    """$HUBFORGE_DIR, else /var/lib/hubforge for root (root's home is closed to the users'
    accounts: a workbench there could not keep users apart), else ~/.hubforge."""
    if os.environ.get("HUBFORGE_DIR"):
        return os.environ["HUBFORGE_DIR"]
    if os.geteuid() == 0:
        return ROOT_DATA_DIR
    return str(Path.home() / ".hubforge")


class Workbench(Configurable):
    """Where the local workbench lives and what it offers."""

    data_dir = Unicode(
        config=True,
        help="""Folder holding all workbench state: hub database, passwords, user homes and
        the shared data folder that plays the HDFS mount. Default: $HUBFORGE_DIR, else
        /var/lib/hubforge when run as root (a place every user account can pass, so users
        are kept apart by default), else ~/.hubforge. Must not be inside the Hubforge source
        tree.""",
    )

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return default_data_dir()

    @validate("data_dir")
    def _check_data_dir(self, proposal: Any) -> str:
        path = Path(proposal["value"]).expanduser().resolve()
        if path == SOURCE_TREE or SOURCE_TREE in path.parents:
            raise TraitError(
                f"Workbench.data_dir={str(path)!r} is inside the source tree {SOURCE_TREE}; "
                "choose a folder outside it, e.g. ~/.hubforge"
            )
        return str(path)

    ip = Unicode(config=True, help="Address the workbench listens on (default 127.0.0.1).")

    @default("ip")
    def _default_ip(self) -> str:
        return os.environ.get("HUBFORGE_IP", "127.0.0.1")

    port = Integer(config=True, help="Public port of the workbench (default 8000).")

    @default("port")
    def _default_port(self) -> int:
        return int(os.environ.get("HUBFORGE_PORT", "8000"))

    @validate("port")
    def _check_port(self, proposal: Any) -> int:
        if not 1 <= proposal["value"] <= 65535:
            raise TraitError(f"Workbench.port={proposal['value']}: use a port in 1-65535")
        return proposal["value"]

    base_url = Unicode(config=True, help="URL prefix of the whole workbench (default '/').")

    @default("base_url")
    def _default_base_url(self) -> str:
        return normalize_base_url(os.environ.get("HUBFORGE_BASE_URL", "/"))

    @validate("base_url")
    def _check_base_url(self, proposal: Any) -> str:
        return normalize_base_url(proposal["value"])

    gpus = List(
        Unicode(),
        config=True,
        help="""GPU inventory handed out to servers and jobs: CUDA device indices or UUIDs.
        Default: the devices `nvidia-smi -L` lists (none without an NVIDIA driver).""",
    )

    @default("gpus")
    def _default_gpus(self) -> list[str]:
        if "HUBFORGE_GPUS" in os.environ:
            return [g for g in os.environ["HUBFORGE_GPUS"].split(",") if g]
        return detect_gpus()

    @validate("gpus")
    def _check_gpus(self, proposal: Any) -> list[str]:
        if len(set(proposal["value"])) != len(proposal["value"]):
            raise TraitError(f"Workbench.gpus={proposal['value']!r} lists a device twice")
        return proposal["value"]

    profiles = List(
        config=True,
        help="""Profiles users pick on the spawn page. Each is a dict with keys slug,
        display_name, description, gpus, cpu, memory, default. Default: CPU plus one
        profile per GPU count the inventory can satisfy. The Helm chart uses the same list.""",
    )

    @default("profiles")
    def _default_profiles(self) -> list[dict[str, Any]]:
        return validate_profiles(default_profiles(len(self.gpus)))

    @validate("profiles")
    def _check_profiles(self, proposal: Any) -> list[dict[str, Any]]:
        try:
            return validate_profiles(proposal["value"], key="Workbench.profiles")
        except ProfileError as e:
            raise TraitError(str(e)) from None

    isolation = Unicode(
        config=True,
        help="""How users are kept apart on this machine. 'accounts': each hub user's server,
        kernels, terminals and TensorBoards run as their own OS account (hubforge-<name>),
        homes and user areas are 0700 (needs root, and a data folder and Python that every
        account can reach). 'none': everything runs as the account that runs the hub (one
        person, or a team that trusts each other with everything). Default:
        $HUBFORGE_ISOLATION, else 'accounts' when run as root where accounts can be made
        (`hubforge up` says why not otherwise), else 'none'.""",
    )

    @default("isolation")
    def _default_isolation(self) -> str:
        if os.environ.get("HUBFORGE_ISOLATION"):
            return os.environ["HUBFORGE_ISOLATION"]
        from .accounts import refusal

        return "accounts" if refusal(self.data_dir) is None else "none"

    def isolation_warning(self) -> str | None:
        """What `hubforge up` says when root runs a workbench whose users are not kept
        apart (None when they are, or when one ordinary account runs it)."""
        if self.isolation == "accounts" or os.geteuid() != 0:
            return None
        from .accounts import refusal

        why = refusal(self.data_dir)
        reason = f" because {why}" if why else " (Workbench.isolation = 'none')"
        return (
            f"Users are NOT kept apart on this workbench{reason}: every user's code runs as "
            "root and can read and change everything. Fine for one person or a team that "
            "trusts each other with everything; otherwise fix that and start again."
        )

    @validate("isolation")
    def _check_isolation(self, proposal: Any) -> str:
        value = proposal["value"]
        if value not in ("none", "accounts"):
            raise TraitError(f"Workbench.isolation={value!r}: choose 'none' or 'accounts'")
        if value == "accounts" and os.geteuid() != 0 and not self.is_own_account():
            raise TraitError(
                "Workbench.isolation='accounts' needs root (it creates one OS account per "
                "user): run `hubforge up` as root, or use 'none' on a one-person machine"
            )
        return value

    def is_own_account(self, roles: tuple[str, ...] = ("hub", "svc")) -> bool:
        """Whether this process runs as one of the workbench's system accounts
        (``hf<wb>_hub``: the hub; ``hf<wb>_svc``: the hubforge service)."""
        import pwd

        from .accounts import service_account_name

        try:
            me = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            return False
        return me in {service_account_name(role, self.state_dir) for role in roles}

    @property
    def service_dir(self) -> Path:
        """The hubforge service's own state (GPU claims, endpoint records, Label Studio
        accounts, password hashes, its jobs' supervisor index): <data dir>/service, its
        account's (the hub's group may read it), with per-user accounts; state/ otherwise."""
        return self.root / "service" if self.isolation == "accounts" else self.state_dir

    @property
    def passwords_file(self) -> Path:
        """The hub's password hashes (written by `hubforge user` and the service's users
        API, read by the hub)."""
        return self.service_dir / "passwords.json"

    @property
    def initial_admin_file(self) -> Path:
        """The first admin's password, kept (0600) until it is changed."""
        return self.service_dir / "initial-admin.txt"

    @property
    def hub_dir(self) -> Path:
        """The hub's own files (database, cookie secret): state/hub, its account's, with
        per-user accounts; state/ itself otherwise."""
        return self.state_dir / "hub" if self.isolation == "accounts" else self.state_dir

    trusted_team = Bool(
        False,
        config=True,
        help="""Run by an ordinary account (not root) with isolation 'none', the workbench is
        for one person: a second user is refused, since their code would run as the same
        account and could read and change everything. True: allow it anyway (a team that
        trusts each other with everything).""",
    )

    def sharing_refusal(self) -> str | None:
        """Why a second user may not be added here, or None when they may."""
        if self.isolation == "accounts" or self.trusted_team or os.geteuid() == 0:
            return None
        import pwd

        me = pwd.getpwuid(os.geteuid()).pw_name
        return (
            f"This workbench runs as the ordinary account {me!r}: every user's code would run "
            "as it and could read and change everyone's files, so it serves one person. For a "
            "team, run `hubforge up` as root with c.Workbench.isolation = 'accounts' (one OS "
            "account per user) or install the Helm chart; if everyone may see everything, set "
            "c.Workbench.trusted_team = True."
        )

    max_job_workers = Integer(
        8, config=True, help="Most workers one training job may ask for (local mode)."
    )

    @validate("max_job_workers")
    def _check_max_job_workers(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"Workbench.max_job_workers={proposal['value']}: must be >= 1")
        return proposal["value"]

    job_cpu_slots = Integer(
        0,
        config=True,
        help="Workers of jobs that may run at once on this machine (local mode); more wait "
        "in the queue. 0: no limit (only jobs that ask for GPUs wait for them).",
    )
    priority_classes = List(
        [
            {"name": "interactive", "value": 300},
            {"name": "normal", "value": 200},
            {"name": "batch", "value": 100, "preemptible": True},
        ],
        config=True,
        help="The job queue's priority classes: name, value (higher first), preemptible, and "
        "optionally users (who may use it; absent: everyone). 'normal' is what a job gets "
        "unasked.",
    )

    @validate("priority_classes")
    def _check_priority_classes(self, proposal: Any) -> list:
        from .jobs.fairshare import classes_from_config

        try:
            classes_from_config(proposal["value"])
        except ValueError as e:
            raise TraitError(f"Workbench.priority_classes: {e}") from None
        return proposal["value"]

    job_preemption = Bool(
        False,
        config=True,
        help="Let a queued job of a higher priority class stop running `batch` jobs that "
        "have a checkpoint (BackupAndRestore); they wait again and resume from it.",
    )
    max_jobs_per_user = Integer(
        0,
        config=True,
        help="Training jobs one user may have pending or running at once (0: the default, 8).",
    )
    max_gpus_per_user = Integer(
        0, config=True, help="GPUs one user's jobs and endpoints may hold at once (0: no limit)."
    )
    max_endpoints_per_user = Integer(
        0, config=True, help="Endpoints one user may have (0: no limit)."
    )

    @validate("max_jobs_per_user", "max_gpus_per_user", "max_endpoints_per_user", "job_cpu_slots")
    def _check_quota(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise TraitError(
                f"Workbench.{proposal['trait'].name}={proposal['value']}: 0 (no limit) or more"
            )
        return proposal["value"]

    job_backend = Unicode(
        "local",
        config=True,
        help="""Where training jobs run: 'local' (processes on this machine) or 'kubernetes'
        (TFJob / Indexed Job; the service needs in-cluster credentials). Backends are the
        entry points of the group 'hubforge.job_backends'.""",
    )

    @validate("job_backend")
    def _check_job_backend(self, proposal: Any) -> str:
        from importlib.metadata import entry_points

        names = sorted(ep.name for ep in entry_points(group="hubforge.job_backends"))
        if proposal["value"] not in names:
            raise TraitError(
                f"Workbench.job_backend={proposal['value']!r}: choose one of {', '.join(names)}"
            )
        return proposal["value"]

    endpoint_backend = Unicode(
        "local",
        config=True,
        help="""Where endpoints run: 'local' (serving processes on this machine) or
        'kubernetes' (TF Serving Deployment + Service, or a KServe InferenceService). Backends
        are the entry points of the group 'hubforge.endpoint_backends'.""",
    )

    @validate("endpoint_backend")
    def _check_endpoint_backend(self, proposal: Any) -> str:
        from importlib.metadata import entry_points

        names = sorted(ep.name for ep in entry_points(group="hubforge.endpoint_backends"))
        if proposal["value"] not in names:
            raise TraitError(
                f"Workbench.endpoint_backend={proposal['value']!r}: choose one of "
                f"{', '.join(names)}"
            )
        return proposal["value"]

    label_studio_python = Unicode(
        config=True,
        help="""Python of Label Studio's own virtual environment (``make setup`` makes
        .venvs/label-studio). Empty: labeling is off and ``hubforge up`` says how to turn it
        on. Default: $HUBFORGE_LABEL_STUDIO_PYTHON, else .venvs/label-studio in the source
        tree when it exists.""",
    )

    @default("label_studio_python")
    def _default_label_studio_python(self) -> str:
        if os.environ.get("HUBFORGE_LABEL_STUDIO_PYTHON"):
            return os.environ["HUBFORGE_LABEL_STUDIO_PYTHON"]
        # in the source tree, or beside the environment Hubforge runs in (/opt/hubforge for
        # a clone closed to other accounts: see the Makefile)
        for root in (Path(__file__).resolve().parents[1], Path(sys.prefix).parent):
            candidate = root / ".venvs/label-studio/bin/python"
            # os.access, not exists(): a Python this account may not reach (a venv of root's
            # pyenv) raises PermissionError in exists(); it is as good as absent here
            if os.access(candidate, os.X_OK):
                return str(candidate)
        return ""

    @validate("label_studio_python")
    def _check_label_studio_python(self, proposal: Any) -> str:
        value = proposal["value"]
        if value and not os.access(value, os.X_OK):
            raise TraitError(
                f"Workbench.label_studio_python={value!r} is not an executable Python: "
                "run `make setup` (it installs Label Studio in .venvs/label-studio) or set ''"
            )
        return value

    shared_data_dir = Unicode(
        "",
        config=True,
        help="""Where the team's data (HDFS) is mounted. Empty: <data_dir>/hdfs, a folder
        that plays the mount locally. The Helm chart sets /mnt/hdfs, the path every pod uses,
        so paths users give the hubforge service mean the same to it.""",
    )

    idle_timeout = Integer(
        3600,
        config=True,
        help="Seconds without activity after which a CPU server is stopped (0: never). A "
        "profile's own idle_timeout wins.",
    )
    gpu_idle_timeout = Integer(
        1800,
        config=True,
        help="Seconds without activity after which a server holding GPUs is stopped (0: "
        "never): idle GPUs are the costliest waste. A profile's own idle_timeout wins.",
    )
    gpu_idle_timeout_when_queued = Integer(
        600,
        config=True,
        help="While jobs wait in the queue for GPUs: seconds without activity after which a "
        "server holding GPUs is stopped, so the jobs get them (0: only the idle timeouts "
        "above). A kernel running a cell counts as activity. Idleness is measured on the "
        "servers' activity reports: keep it above twice activity_interval.",
    )
    activity_interval = Integer(
        60,
        config=True,
        help="Seconds between two activity reports of a user's server to the hub (what the "
        "idle timeouts are measured on; JupyterHub's default is 300).",
    )
    cull_interval = Integer(60, config=True, help="Seconds between two checks for idle servers.")

    @validate(
        "idle_timeout",
        "gpu_idle_timeout",
        "gpu_idle_timeout_when_queued",
        "activity_interval",
        "cull_interval",
    )
    def _check_idle(self, proposal: Any) -> int:
        name = proposal["trait"].name
        low = 1 if name in ("cull_interval", "activity_interval") else 0
        if proposal["value"] < low:
            raise TraitError(f"Workbench.{name}={proposal['value']!r}: must be >= {low}")
        return proposal["value"]

    max_schedules_per_user = Integer(
        20, config=True, help="How many notebook schedules one user may have."
    )
    drift_check_interval = Integer(
        60,
        config=True,
        help="Seconds between the service's comparisons of endpoints' logged calls with "
        "their drift baselines (an alert when they drift).",
    )

    max_endpoint_replicas = Integer(
        4,
        config=True,
        help="Copies one local endpoint may run (deploy(..., replicas=N) or min/max); each "
        "is a process of its own on this machine.",
    )

    endpoint_scale_down_delay = Integer(
        60,
        config=True,
        help="Seconds a scaled local endpoint (replicas min < max) must have needed fewer "
        "copies before one is stopped (a short lull keeps them).",
    )

    endpoint_health_interval = Float(
        5.0,
        config=True,
        help="Seconds between health checks (/healthz) of each copy of a local endpoint; a "
        "copy that fails 3 in a row is stopped and replaced.",
    )

    endpoint_scale_up_window = Float(
        10.0,
        config=True,
        help="Seconds of calls in flight a scaled local endpoint averages before it adds "
        "copies (a burst shorter than this adds none).",
    )

    @validate("endpoint_health_interval", "endpoint_scale_up_window")
    def _check_endpoint_seconds(self, proposal: Any) -> float:
        name, value = proposal["trait"].name, proposal["value"]
        if not 0.5 <= value <= 3600:
            raise TraitError(f"Workbench.{name}={value!r}: from 0.5 to 3600 seconds")
        return value

    @validate("max_endpoint_replicas", "endpoint_scale_down_delay")
    def _check_replicas(self, proposal: Any) -> int:
        name, value = proposal["trait"].name, proposal["value"]
        most = 64 if name == "max_endpoint_replicas" else 86400
        if not 1 <= value <= most:
            raise TraitError(f"Workbench.{name}={value!r}: from 1 to {most}")
        return value

    @validate("drift_check_interval")
    def _check_drift_interval(self, proposal: Any) -> int:
        if not 1 <= proposal["value"] <= 86400:
            raise TraitError(
                f"Workbench.drift_check_interval={proposal['value']!r}: seconds, 1 to 86400"
            )
        return proposal["value"]

    schedule_clock_file = Unicode(
        "",
        config=True,
        help="For tests and benchmarks only: a file holding the time the schedules' clock "
        "shows (seconds since the epoch; the real time while there is none), which a test "
        "moves on instead of waiting; relative to the service's folder. Leave it empty.",
    )
    tensorboard_idle_timeout = Integer(
        3600, config=True, help="Seconds without a request after which a TensorBoard stops."
    )
    tensorboard_max = Integer(
        3, config=True, help="Most TensorBoards one user's server runs at once."
    )

    # Derived locations -------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    @property
    def state_dir(self) -> Path:
        """Hub database, cookie secret, passwords, service state (0700)."""
        return self.root / "state"

    @property
    def homes_dir(self) -> Path:
        return self.root / "homes"

    @property
    def shared_data(self) -> Path:
        """The team's data (the HDFS mount; locally a folder that plays it): $HUBFORGE_DATA."""
        return Path(self.shared_data_dir) if self.shared_data_dir else self.root / "hdfs"

    def home_of(self, user: str) -> Path:
        return self.homes_dir / user

    def user_area(self, user: str) -> Path:
        return self.shared_data / "users" / user

    def prepare(self) -> None:
        """Create the folder layout with private state."""
        if self.isolation == "accounts" and os.geteuid() != 0:
            return  # the hub's own account: `hubforge up` (root) made all of it
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.isolation != "accounts":  # with accounts: prepare_shared sets its mode
            self.state_dir.chmod(0o700)
        for folder in (self.homes_dir, self.shared_data / "datasets", self.shared_data / "users"):
            folder.mkdir(parents=True, exist_ok=True)
        if self.isolation == "accounts":
            from .accounts import ensure_group, prepare_shared

            ensure_group(self.state_dir)
            prepare_shared(self.root, self.shared_data, self.homes_dir, self.state_dir)

    @property
    def public_origin(self) -> str:
        """Scheme, host and port users reach the hub at (no path)."""
        host = "127.0.0.1" if self.ip in ("", "0.0.0.0") else self.ip
        return f"http://{host}:{self.port}"

    @property
    def public_url(self) -> str:
        return self.public_origin + self.base_url


class ConfigError(ValueError):
    """A configuration mistake that stops start-up."""


def config_file(path: str | None = None) -> Path | None:
    """The config file to load: ``path``, $HUBFORGE_CONFIG, or <data dir>/hubforge_config.py."""
    candidate = path or os.environ.get("HUBFORGE_CONFIG")
    if candidate:
        if not Path(candidate).is_file():
            raise ConfigError(f"Config file {candidate!r} does not exist: check the path")
        return Path(candidate).resolve()
    default_file = Path(Workbench().data_dir) / "hubforge_config.py"
    return default_file if default_file.is_file() else None


def load_config(path: str | None = None) -> Config:
    """Load the Hubforge config file (Python, or JSON as the Helm chart writes it)."""
    file = config_file(path)
    if file is None:
        return Config()
    loader_class = JSONFileConfigLoader if file.suffix == ".json" else PyFileConfigLoader
    loader = loader_class(file.name, path=str(file.parent))
    try:
        return loader.load_config()
    except Exception as e:  # a user's Python file: say where it broke
        raise ConfigError(f"Could not load config file {file}: {e}") from e


def check_known_keys(config: Config, classes: list[type[Configurable]]) -> None:
    """Stop on a misspelt setting of one of ``classes``, naming the valid keys."""
    problems = []
    for cls in classes:
        section = config.get(cls.__name__, {})
        known = set(cls.class_traits(config=True))
        for key in section:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" Did you mean {cls.__name__}.{close[0]}?" if close else ""
                problems.append(
                    f"Unknown setting {cls.__name__}.{key}.{hint} "
                    f"Valid keys: {', '.join(sorted(known))}"
                )
    if problems:
        raise ConfigError("\n".join(problems))


def load_workbench(path: str | None = None) -> Workbench:
    """The configured Workbench; ConfigError names any bad key or value."""
    config = load_config(path)
    from .notify import Notifications  # configured in the same file

    check_known_keys(config, [Workbench, Notifications])
    try:
        workbench = Workbench(config=config)
        # Values from @default (environment, detection) skip @validate: check them too.
        for name in workbench.trait_names(config=True):
            setattr(workbench, name, getattr(workbench, name))
    except TraitError as e:
        raise ConfigError(str(e)) from None
    return workbench
