"""The `nnspec` command line: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import os
import sys

from nnspec import __version__

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


def _integer(low: int, high: int, what: str):
    """An argparse type: an integer in [low, high], refused with a message that says what is allowed."""
    def parse(text: str) -> int:
        body = text.strip()
        if len(body) > 40 or not body.lstrip("+-").isdigit():
            raise argparse.ArgumentTypeError(f"expected {what}, got {text[:40]!r}")
        value = int(body)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _real(low: float, what: str, strict: bool = False):
    """An argparse type: a finite number >= low (> low when `strict`); nan and inf are refused."""
    def parse(text: str) -> float:
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text[:40]!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text[:40]}")
        return value

    parse.__name__ = "number"
    return parse


SEED = _integer(0, 2**63 - 1, "a seed: an integer from 0 to 2**63 - 1")
COUNT = _integer(0, 2**63 - 1, "a non-negative integer")
BYTES = _integer(0, 2**63 - 1, "a number of bytes (a non-negative integer)")
BATCH = _integer(1, 2**31 - 1, "a batch size: an integer >= 1")
STEPS = _integer(1, 1_000_000, "a number of steps from 1 to 1,000,000")
TOLERANCE = _real(0.0, "a tolerance: a finite number >= 0")
RATE = _real(0.0, "a learning rate: a finite number > 0", strict=True)


def _parser() -> argparse.ArgumentParser:
    from nnspec.formats import FORMATS

    p = argparse.ArgumentParser(prog="nnspec", description="Declarative model specs: check, compile, build.")
    p.add_argument("--version", action="version", version=f"nnspec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("check", help="validate spec files and directories")
    c.add_argument("paths", nargs="+", metavar="PATH")
    c.add_argument("--format", choices=FORMATS, default="full")
    c.add_argument("--strict", action="store_true", help="warnings count as errors")
    c.add_argument("--select", default="", help="only these codes or families (NS2, NS201,...), comma-separated")
    c.add_argument("--ignore", default="", help="drop these codes or families, comma-separated")
    c.add_argument("--exit-zero", action="store_true", help="exit 0 even when errors are found")
    c.add_argument("--output-file", "-o", help="write the report here instead of stdout")
    c.add_argument("--specs-only", action="store_true",
                   help="skip named files without a top-level `nnspec` key (for pre-commit)")
    c.add_argument("--quiet", "-q", action="store_true", help="no summary line")

    r = sub.add_parser("rule", help="explain a diagnostic code")
    r.add_argument("code", nargs="?")
    r.add_argument("--list", action="store_true", help="list every code")

    i = sub.add_parser("inits", help="every tensor with its initializer and where it came from")
    i.add_argument("spec")

    sub.add_parser("schema", help="print the JSON Schema of the spec format")

    n = sub.add_parser("initializers", help="the initializers, or one in full")
    n.add_argument("name", nargs="?")

    k = sub.add_parser("compile", help="emit standalone PyTorch or Keras source")
    k.add_argument("spec")
    k.add_argument("--target", choices=("torch", "keras"), required=True)
    k.add_argument("-o", "--output")
    k.add_argument("--force", action="store_true", help="overwrite a file that nnspec did not generate")

    b = sub.add_parser("build", help="build the model in memory and print a summary")
    b.add_argument("spec")
    b.add_argument("--target", choices=("torch", "keras"), default="torch")
    b.add_argument("--device", default="cpu", help="cpu, meta (no memory), cuda, ...")
    b.add_argument("--seed", type=SEED)
    b.add_argument("--max-params", type=COUNT, help="refuse to build above this many parameters")
    b.add_argument("--max-activation-bytes", type=BYTES, metavar="BYTES",
                   help="refuse to build when one sample's float32 activations need more bytes")

    q = sub.add_parser("parity", help="compare the PyTorch and Keras models on one batch")
    q.add_argument("spec")
    q.add_argument("--atol", type=TOLERANCE, default=1e-4)
    q.add_argument("--rtol", type=TOLERANCE, default=1e-4)
    q.add_argument("--seed", type=SEED)
    q.add_argument("--batch", type=BATCH, default=2)
    q.add_argument("--max-activation-bytes", type=BYTES, metavar="BYTES",
                   help="refuse above this many bytes of float32 activations for the batch (default 16 GiB)")
    q.add_argument("--perturb", action="store_true",
                   help="add noise to every weight first, so zero and identity initializers hide nothing")

    pr = sub.add_parser("probe", help="train a few SGD steps and report stuck and dead units")
    pr.add_argument("spec")
    pr.add_argument("--steps", type=STEPS, default=20)
    pr.add_argument("--seed", type=SEED, default=0)
    pr.add_argument("--lr", type=RATE, default=0.1)
    pr.add_argument("--max-activation-bytes", type=BYTES, metavar="BYTES",
                    help="refuse above this many bytes of float32 activations for the batch of 16 (default 16 GiB)")
    return p


def _codes(text: str) -> list[str]:
    return [c.strip().upper() for c in text.split(",") if c.strip()]


def _matches(code: str, patterns: list[str]) -> bool:
    return any(code.startswith(p) for p in patterns)


def cmd_check(args) -> int:
    from nnspec import _analyse_path, formats
    from nnspec.compiler.codes import CODES
    from nnspec.files import ReportRefused, discover, leaves_tree, write_report

    select, ignore = _codes(args.select), _codes(args.ignore)
    for pattern in select + ignore:
        if not any(code.startswith(pattern) for code in CODES):
            print(f"nnspec: error: `{pattern}` matches no rule code (see `nnspec rule --list`)", file=sys.stderr)
            return EXIT_USAGE
    files, missing = discover(args.paths, specs_only=args.specs_only)
    for path in missing:
        print(f"nnspec: error: {formats._one_line(path)}: no such file or directory", file=sys.stderr)
    for path in files:
        target = leaves_tree(path)
        if target is not None:
            print(f"nnspec: warning: {formats._one_line(path)} is a symbolic link that leaves the tree (to "
                  f"{formats._one_line(target)}); its lines are quoted only if it is a spec", file=sys.stderr)
    diags = []
    unreadable = False
    for path in files:
        _, found = _analyse_path(path)
        for d in found:
            if d.code == "NS001" and (not os.path.isfile(path) or not os.access(path, os.R_OK)):
                unreadable = True
        diags.extend(found)
    if select:
        diags = [d for d in diags if _matches(d.code, select)]
    if ignore:
        diags = [d for d in diags if not _matches(d.code, ignore)]
    fmt = args.format
    quiet = args.quiet or (missing and not files)  # "All checks passed (0 files)" would mislead
    if fmt == "full":
        text = formats.render_full(diags)
        if not quiet:
            text += formats.summary(diags, len(files)) + "\n"
    elif fmt == "concise":
        text = formats.render_concise(diags)
        if not quiet:
            text += formats.summary(diags, len(files)) + "\n"
    elif fmt == "json":
        text = formats.render_json(diags)
    elif fmt == "github":
        text = formats.render_github(diags)
    elif fmt == "sarif":
        text = formats.render_sarif(diags, __version__)
    else:
        text = formats.render_junit(diags, files, strict=args.strict)
    if args.output_file:
        try:
            write_report(args.output_file, text, files)
        except ReportRefused as exc:
            print(f"nnspec: error: {formats._one_line(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as exc:
            print(f"nnspec: error: cannot write {formats._one_line(args.output_file)}: {exc.strerror or exc}",
                  file=sys.stderr)
            return EXIT_USAGE
    else:
        sys.stdout.write(text)
    if missing or unreadable:
        return EXIT_USAGE
    failing = [d for d in diags if d.severity == "error" or (args.strict and d.severity == "warning")]
    if failing and not args.exit_zero:
        return EXIT_FOUND
    return EXIT_OK


def cmd_rule(args) -> int:
    from nnspec.compiler.codes import CODES, lookup

    if args.list or not args.code:
        for c in CODES.values():
            print(f"{c.code}  {c.severity:<7}  {c.name:<26}  {c.summary}")
        return EXIT_OK
    code = lookup(args.code)
    if code is None:
        print(f"nnspec: error: unknown rule code {args.code!r} (see `nnspec rule --list`)", file=sys.stderr)
        return EXIT_USAGE
    print(code.render())
    return EXIT_OK


def _load_or_report(path: str):
    from nnspec import _analyse_path, formats

    spec, diags = _analyse_path(path)
    errors = [d for d in diags if d.is_error]
    if spec is None or errors:
        sys.stderr.write(formats.render_full(diags))
        sys.stderr.write(formats.summary(diags, 1) + "\n")
        return None, (EXIT_USAGE if any(d.code == "NS001" and not os.path.isfile(path) for d in diags)
                      else EXIT_FOUND)
    if diags:
        sys.stderr.write(formats.render_concise(diags))
    return spec, EXIT_OK


def cmd_inits(args) -> int:
    from nnspec.tables import inits_table

    spec, code = _load_or_report(args.spec)
    if spec is None:
        return code
    sys.stdout.write(inits_table(spec))
    return EXIT_OK


def cmd_schema(args) -> int:
    from nnspec.schema.jsonschema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


def cmd_initializers(args) -> int:
    from nnspec.compiler.initializers import NAMES, REGISTRY
    from nnspec.schema.errors import did_you_mean
    from nnspec.tables import initializer_doc, initializers_table

    if not args.name:
        sys.stdout.write(initializers_table())
        return EXIT_OK
    if args.name not in REGISTRY:
        hint = did_you_mean(args.name, NAMES)
        print(f"nnspec: error: unknown initializer {args.name!r}" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(initializer_doc(args.name))
    return EXIT_OK


def cmd_compile(args) -> int:
    import nnspec
    from nnspec.files import WriteRefused, safe_write
    from nnspec.formats import _one_line

    spec, code = _load_or_report(args.spec)
    if spec is None:
        return code
    try:
        source = nnspec.emit(spec, target=args.target)
    except ImportError as exc:
        print(f"nnspec: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.output:
        sys.stdout.write(source)
        return EXIT_OK
    try:
        safe_write(args.output, source, force=args.force)
    except WriteRefused as exc:
        print(f"nnspec: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"nnspec: error: cannot write {_one_line(args.output)}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {_one_line(args.output)}", file=sys.stderr)
    return EXIT_OK


def cmd_build(args) -> int:
    import nnspec
    from nnspec import formats
    from nnspec.compiler.diagnostics import SpecError
    from nnspec.tables import build_table

    spec, code = _load_or_report(args.spec)
    if spec is None:
        return code
    if args.target == "keras" and args.device not in ("cpu",):
        print("nnspec: error: --device applies to the torch target only", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.max_activation_bytes is not None:
            from nnspec.compiler.budget import check_activation_budget

            check_activation_budget(spec, args.max_activation_bytes, 1, "build")
        model = nnspec.build(spec, target=args.target, seed=args.seed, device=args.device,
                             max_params=args.max_params)
    except SpecError as exc:
        sys.stderr.write(formats.render_full(exc.diagnostics))
        return EXIT_FOUND
    except (RuntimeError, ValueError) as exc:
        print(f"nnspec: error: {formats._one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(build_table(spec))
    print(f"built: {type(model).__module__}.{type(model).__name__} on {args.device if args.target == 'torch' else 'keras'}")
    return EXIT_OK


def cmd_parity(args) -> int:
    from nnspec import formats
    from nnspec.compiler.diagnostics import SpecError
    from nnspec.parity import run_parity

    spec, code = _load_or_report(args.spec)
    if spec is None:
        return code
    try:
        report = run_parity(spec, atol=args.atol, rtol=args.rtol, seed=args.seed, batch=args.batch,
                            perturb_weights=args.perturb, max_activation_bytes=args.max_activation_bytes)
    except SpecError as exc:
        sys.stderr.write(formats.render_full(exc.diagnostics))
        return EXIT_FOUND
    sys.stdout.write(report.text())
    return EXIT_OK if report.ok else EXIT_FOUND


TRAINING_RULES = ("NS201", "NS202", "NS203", "NS204", "NS205")


def cmd_probe(args) -> int:
    """Probe a spec; unlike build, errors of the training rules (NS201-NS205) do not stop it: the
    probe exists to show what they claim."""
    from nnspec import _analyse_path, formats
    from nnspec.probe import run_probe

    spec, diags = _analyse_path(args.spec)
    blocking = [d for d in diags if d.is_error and d.code not in TRAINING_RULES]
    if spec is None or blocking:
        sys.stderr.write(formats.render_full(diags))
        return EXIT_USAGE if any(d.code == "NS001" and not os.path.isfile(args.spec) for d in diags) else EXIT_FOUND
    if diags:
        sys.stderr.write(formats.render_concise(diags))
    from nnspec.compiler.diagnostics import SpecError

    try:
        report = run_probe(spec, steps=args.steps, seed=args.seed, lr=args.lr,
                           max_activation_bytes=args.max_activation_bytes)
    except SpecError as exc:
        sys.stderr.write(formats.render_full(exc.diagnostics))
        return EXIT_FOUND
    sys.stdout.write(report.text())
    return EXIT_FOUND if report.failed else EXIT_OK


COMMANDS = {"check": cmd_check, "rule": cmd_rule, "inits": cmd_inits, "schema": cmd_schema,
            "initializers": cmd_initializers, "compile": cmd_compile, "build": cmd_build, "parity": cmd_parity,
            "probe": cmd_probe}


def main(argv: list[str] | None = None) -> int:
    # nnspec's own validation models are internal: third-party pydantic plugins (observability
    # hooks) have nothing to observe there, and discovering them scans every installed package.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug in nnspec or a framework error: exit 2, not 1 ("problems found")
        if os.environ.get("NNSPEC_DEBUG"):
            raise
        print(f"nnspec: internal error: {type(exc).__name__}: {exc}\n"
              "(set NNSPEC_DEBUG=1 for the traceback; please report it with the spec that caused it)",
              file=sys.stderr)
        return EXIT_USAGE
