"""`hubforge serve`: deploy models to TF-Serving-compatible endpoints, call them, export
TFLite."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    from .. import serving

    try:
        if args.serve_command == "deploy":
            _deploy(args)
        elif args.serve_command == "list":
            for ep in serving.list_endpoints():
                queue = ep.record.get("queue")  # Kubernetes with Kueue: held until admitted
                state = "running" if ep.record["running"] else "queued" if queue else "stopped"
                print(
                    f"{ep.name:<24} {state:<8} versions={ep.versions} "
                    f"{_copies_text(ep.record)} {ep.url}"
                )
                if ep.rollout:
                    print(f"  {_rollout_line(ep.rollout)}")
                if queue:
                    print(f"  {queue['reason']}")
        elif args.serve_command == "predict":
            instances = json.loads(args.instances)
            print(json.dumps(serving.get(args.name).predict(instances, version=args.version)))
        elif args.serve_command == "traffic":
            report = serving.get(args.name).traffic(args.window, points=args.points)
            print("\n".join(report.lines()))
        elif args.serve_command == "rollback":
            print(_rollout_line(serving.get(args.name).rollback()))
        elif args.serve_command == "undeploy":
            serving.get(args.name).undeploy()
            print(f"Undeployed {args.name} (its model versions stay in your data area)")
        elif args.serve_command == "optimize":
            _optimize(args)
        elif args.serve_command == "export-tflite":
            print("Converting (TensorFlow loads in a few seconds)...", file=sys.stderr)
            report = serving.export_tflite(
                args.model_dir,
                output=args.output,
                quantize=args.quantize,
                representative_data=_load_array(args.representative, "--representative"),
                sample_data=_load_array(args.samples, "--samples"),
                labels=_load_array(args.labels, "--labels"),
            )
            print(report)
    except (serving.ServingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _deploy(args: argparse.Namespace) -> None:
    from .. import serving

    ep = serving.deploy(
        _deploy_source(args),
        args.name,
        version=args.version,
        batching=_batching(args),
        gpus=args.gpus,
        canary=_canary(args),
        replicas=_replicas(args),
    )
    try:  # a row shaped like the model's input, so the printed line works as is
        example = ep.example_instances()
    except serving.ServingError:
        example = None
    print(
        f"{ep.name}: versions {ep.versions}, {_copies_text(ep.record)}\n"
        f"predict with:\n  {ep.curl(example)}"
    )
    if ep.rollout and ep.rollout["state"] == "running":
        print(_rollout_line(ep.rollout))


def _optimize(args: argparse.Namespace) -> None:
    from .. import serving

    def progress(step: int, total: int, what: str) -> None:
        print(f"[{step}/{total}] {what}", file=sys.stderr, flush=True)

    print("Building the variants (TensorFlow loads in a few seconds)...", file=sys.stderr)
    report = serving.optimize(
        _deploy_source(args),
        variants=args.variants,
        data=args.data,
        max_accuracy_loss=args.max_accuracy_loss,
        sparsity=args.sparsity,
        clusters=args.clusters,
        epochs=args.epochs,
        output=args.output,
        progress=progress,
        run="here" if args.here else "auto",
        gpus=args.gpus,
    )
    print(report.table())
    print(f"report, plot and held-out data in {report.folder}")
    if report.chosen is not None:
        print(f"run it: python {Path(report.chosen.path).with_name('predict.py')} DATA.npz")


def _canary(args: argparse.Namespace) -> dict | None:
    if args.canary is None:
        if args.canary_interval is not None:
            raise ValueError("--canary-interval goes with --canary PERCENT")
        return None
    canary: dict = {"steps": [args.canary, *(s for s in (50, 100) if s > args.canary)]}
    if args.canary_interval is not None:
        canary["interval"] = args.canary_interval
    return canary


def _replicas(args: argparse.Namespace) -> int | dict | None:
    """--replicas 3 (copies) or 1-4 (scaled between), --target-concurrency C or
    --target-cpu P (Kubernetes)."""
    text, target, cpu = args.replicas, args.target_concurrency, args.target_cpu
    if target is not None and cpu is not None:
        raise ValueError("scale on --target-concurrency or on --target-cpu, not both")
    flag = "--target-cpu" if cpu is not None else "--target-concurrency"
    if text is None:
        if target is not None or cpu is not None:
            raise ValueError(f"{flag} goes with --replicas MIN-MAX")
        return None
    low, _, high = text.partition("-")
    try:
        low_n, high_n = int(low), int(high or low)
    except ValueError:
        raise ValueError(
            f"--replicas {text}: a number of copies (3) or a range to scale in (1-4)"
        ) from None
    if not high:
        if target is not None or cpu is not None:
            raise ValueError(f"{flag} goes with a range: --replicas MIN-MAX")
        return low_n
    settings: dict = {"min": low_n, "max": high_n}
    if target is not None:
        settings["target_concurrency"] = target
    if cpu is not None:
        settings["target_cpu"] = cpu
    return settings


def _copies_text(record: dict) -> str:
    """'copies 2/3' (serving now / wanted), '1-4 copies (2 serving)' when scaled."""
    settings, ready = record.get("replicas") or {"min": 1, "max": 1}, record.get("ready", 0)
    if settings["min"] == settings["max"]:
        return f"copies {ready}/{settings['min']}"
    return f"copies {ready} (scaled {settings['min']}-{settings['max']})"


def _rollout_line(rollout: dict) -> str:
    """'canary: version 3 gets 10% (version 2 the rest)' or how it ended."""
    if rollout["state"] == "running":
        return (
            f"canary: version {rollout['canary']} gets {rollout['percent']}% "
            f"(version {rollout['stable']} the rest)"
        )
    return f"canary: {rollout['history'][-1]['event']}"


def _deploy_source(args: argparse.Namespace) -> object:
    if bool(args.model_dir) == bool(args.job):
        raise ValueError("give a MODEL_DIR or --job JOB_ID (one of them)")
    if args.job:
        from .. import jobs

        return jobs.get(args.job)
    return args.model_dir


def _batching(args: argparse.Namespace) -> dict | None:
    if args.max_batch_size is None and args.batch_timeout_ms is None:
        return None
    batching: dict = {"max_batch_size": args.max_batch_size or 0}
    if args.batch_timeout_ms is not None:
        batching["batch_timeout_ms"] = args.batch_timeout_ms
    return batching


def _load_array(path: str | None, flag: str) -> object:
    """A .npy file, or a .npz whose arrays are the model's inputs by name."""
    if path is None:
        return None
    import numpy as np

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{flag} {path}: not a .npy/.npz file numpy can read ({e})") from None
    return dict(data) if isinstance(data, np.lib.npyio.NpzFile) else data


def _deploy_parser(serve_sub: argparse._SubParsersAction) -> None:
    deploy = serve_sub.add_parser("deploy", help="serve a SavedModel (adds a version)")
    deploy.add_argument(
        "model_dir", nargs="?", help="the exported SavedModel folder in your data area"
    )
    deploy.add_argument("--job", help="deploy what this finished training job exported")
    deploy.add_argument("--name", required=True, help="endpoint name")
    deploy.add_argument("--version", type=int, help="version number (default: next)")
    deploy.add_argument("--gpus", type=int, default=0, help="GPUs (Kubernetes endpoints)")
    deploy.add_argument(
        "--max-batch-size",
        type=int,
        help="merge concurrent requests up to N rows (0: off)",
    )
    deploy.add_argument(
        "--batch-timeout-ms", type=float, help="longest a request waits for a batch (2)"
    )
    deploy.add_argument(
        "--canary",
        type=int,
        metavar="PERCENT",
        help="the new version gets PERCENT of the requests, then 50, then all, while it "
        "answers as well as the version served now (else it is rolled back)",
    )
    deploy.add_argument("--canary-interval", help="time between steps (default 5m)")
    deploy.add_argument(
        "--replicas",
        metavar="N|MIN-MAX",
        help="copies serving the endpoint (a crashed one is restarted), or a range scaled "
        "on the requests in flight (default: as it is; 1 for a new endpoint)",
    )
    deploy.add_argument(
        "--target-concurrency",
        type=float,
        help="requests in flight per copy the scaling aims at (with --replicas MIN-MAX; 8)",
    )
    deploy.add_argument(
        "--target-cpu",
        type=int,
        metavar="PERCENT",
        help="Kubernetes: scale on CPU use instead (percent of a pod's CPU request)",
    )


def _optimize_parser(serve_sub: argparse._SubParsersAction) -> None:
    from ..serving.mobile_variants import DEFAULT_VARIANTS, VARIANTS

    optimize = serve_sub.add_parser(
        "optimize", help="variants of a Keras model for phones, compared side by side"
    )
    optimize.add_argument("model_dir", nargs="?", help="the exported SavedModel (Keras)")
    optimize.add_argument("--job", help="the model this finished training job exported")
    optimize.add_argument(
        "--data",
        help="an .npz with arrays x and y, or a folder of class folders (default, for --job: "
        "the training data the job kept with distribute.save_training_data)",
    )
    optimize.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, from {','.join(VARIANTS)} (default %(default)s)",
    )
    optimize.add_argument(
        "--max-accuracy-loss", type=float, default=1.0, help="points a variant may lose (1)"
    )
    optimize.add_argument("--sparsity", type=float, default=0.5, help="pruned: zeros (0.5)")
    optimize.add_argument("--clusters", type=int, default=16, help="clustered: values (16)")
    optimize.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (2)")
    optimize.add_argument("--output", help="the folder (default: <model>-mobile beside it)")
    optimize.add_argument(
        "--here",
        action="store_true",
        help="run in this process (in a workbench it runs as a job by default)",
    )
    optimize.add_argument("--gpus", type=int, default=0, help="GPUs the job asks for (0)")


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="deploy models to TF-Serving-compatible endpoints")
    serve_sub = serve.add_subparsers(dest="serve_command", required=True, metavar="ACTION")
    _deploy_parser(serve_sub)
    rollback = serve_sub.add_parser("rollback", help="roll a running canary back now")
    rollback.add_argument("name")
    serve_sub.add_parser("list", help="your endpoints")
    predict = serve_sub.add_parser("predict", help="call an endpoint")
    predict.add_argument("name")
    predict.add_argument("instances", help='JSON rows, e.g. "[[1, 2, 3, 4]]"')
    predict.add_argument("--version", type=int)
    traffic = serve_sub.add_parser(
        "traffic", help="an endpoint's requests, errors and latency (what the gateway saw)"
    )
    traffic.add_argument("name")
    traffic.add_argument("--window", default="1h", help="15m, 1h, 1d... (default 1h; 1d kept)")
    traffic.add_argument("--points", type=int, default=40, help="steps in the sparklines")
    undeploy = serve_sub.add_parser("undeploy", help="stop an endpoint")
    undeploy.add_argument("name")
    _optimize_parser(serve_sub)
    export = serve_sub.add_parser(
        "export-tflite",
        help="convert a SavedModel for mobile, with a size/accuracy report",
    )
    export.add_argument("model_dir", help="a SavedModel, or a folder of versions (newest)")
    export.add_argument("--output", help="the .tflite file (default: next to the model)")
    export.add_argument(
        "--quantize", choices=["none", "dynamic", "float16", "int8"], default="none"
    )
    export.add_argument("--representative", help=".npy/.npz of typical inputs (int8 needs it)")
    export.add_argument("--samples", help=".npy/.npz inputs to compare the models on")
    export.add_argument("--labels", help=".npy class ids of --samples: reports accuracy")
    serve.set_defaults(func=cmd_serve)
