"""The `nnspec` command line: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys

from nnspec.version import __version__

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, but not `(default: None)` on options that have none."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return action.help
        return super()._get_help_string(action)


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


class _Unused:
    """Stands for the arguments of a subcommand that is not being run (see `_parser`)."""

    def add_argument(self, *args, **kwargs) -> None:
        pass


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line; with `only`, the options of that subcommand alone (each subcommand is still listed,
    with its help): building every option of every subcommand is a tenth of `nnspec check`'s start-up."""
    from nnspec.files import DEFAULT_EXCLUDE
    from nnspec.formats import FORMATS

    p = argparse.ArgumentParser(prog="nnspec", description="Declarative model specs: check, compile, build.",
                                formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version", version=f"nnspec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)
        return parser if only is None or only == name else _Unused()

    c = command("check", "validate spec files and directories")
    c.add_argument("paths", nargs="+", metavar="PATH",
                   help="spec files and directories (searched for *.yaml / *.yml specs); `-` reads standard input")
    c.add_argument("--format", choices=FORMATS, default="full",
                   help="full: with source lines; concise: one line each; json; github: workflow annotations "
                        "(and a summary in $GITHUB_STEP_SUMMARY); sarif: code scanning; junit; "
                        "gitlab: Code Quality report")
    c.add_argument("--strict", action="store_true", help="warnings count as errors")
    c.add_argument("--select", default=None,
                   help="only these codes or families (NS2, NS201,...), comma-separated; replaces `select` "
                        "of the configuration (default: all)")
    c.add_argument("--ignore", default=None,
                   help="drop these codes or families, comma-separated; replaces `ignore` of the configuration")
    c.add_argument("--exclude", default=None, metavar="GLOBS",
                   help="comma-separated gitignore-style globs to skip when walking directories; replaces "
                        "`exclude` of the configuration and the default " + ",".join(DEFAULT_EXCLUDE))
    c.add_argument("--extend-exclude", default=None, metavar="GLOBS",
                   help="globs to skip in addition to the excluded ones")
    c.add_argument("--force-exclude", action="store_true",
                   help="apply the excludes to files named on the command line too (for pre-commit)")
    c.add_argument("--no-respect-gitignore", dest="respect_gitignore", action="store_false",
                   help="also check files that a .gitignore excludes")
    c.add_argument("--stdin-filename", default=None, metavar="NAME",
                   help="the file name to report for `-` (standard input); per-file-ignores match it")
    c.add_argument("--max-params", type=int, default=None, metavar="N",
                   help="warn (NS005) about models above N parameters (default: the configuration's "
                        "`max-params`, else 2,000,000,000)")
    c.add_argument("--config", default=None, metavar="FILE",
                   help="read this configuration file instead of the nearest pyproject.toml / nnspec.toml")
    c.add_argument("--exit-zero", action="store_true", help="exit 0 even when errors are found")
    c.add_argument("--output-file", "-o", metavar="FILE", help="write the report here instead of stdout")
    c.add_argument("--specs-only", action="store_true",
                   help="skip named files without a top-level `nnspec` key (for pre-commit)")
    c.add_argument("--quiet", "-q", action="store_true", help="no summary line")

    r = command("rule", "explain a diagnostic code, or list a family (NS2)")
    r.add_argument("code", nargs="?", help="a code (NS201) or a family (NS2, NS20); none: list every code")
    r.add_argument("--list", action="store_true", help="list every code")

    i = command("inits", "every tensor with its initializer and where it came from")
    i.add_argument("spec", help="the spec file")

    s = command("schema", "print the JSON Schema (draft-07) of the spec format")
    s.add_argument("-o", "--output", default=None, metavar="FILE", help="write it to FILE instead of stdout")

    n = command("initializers", "the initializers, or one in full")
    n.add_argument("name", nargs="?", help="an initializer name; none: the table of all")

    k = command("compile", "emit standalone PyTorch or Keras source")
    k.add_argument("spec", help="the spec file")
    k.add_argument("--target", choices=("torch", "keras"), required=True, help="the framework of the source")
    k.add_argument("-o", "--output", help="write the source here (default: stdout)")
    k.add_argument("--force", action="store_true", help="overwrite a file that nnspec did not generate")

    b = command("build", "build the model in memory and print a summary")
    b.add_argument("spec", help="the spec file")
    b.add_argument("--target", choices=("torch", "keras"), default="torch", help="the framework to build with")
    b.add_argument("--device", default="cpu", help="cpu, meta (no memory), cuda, ... (torch only)")
    b.add_argument("--seed", type=SEED, help="random seed of the initializers (default: the spec's `seed`)")
    b.add_argument("--max-params", type=COUNT,
                   help="refuse to build above this many parameters (default: the configuration's "
                        "`max-params`, else 2,000,000,000)")
    b.add_argument("--max-activation-bytes", type=BYTES, metavar="BYTES",
                   help="refuse to build when one sample's float32 activations need more bytes")

    q = command("parity", "compare the PyTorch and Keras models on one batch")
    q.add_argument("spec", help="the spec file")
    q.add_argument("--atol", type=TOLERANCE, default=1e-4, help="absolute tolerance")
    q.add_argument("--rtol", type=TOLERANCE, default=1e-4,
                   help="relative tolerance: each element must be within atol + rtol * |torch output|")
    q.add_argument("--seed", type=SEED, help="random seed of the weights, the perturbation and the batch "
                                             "(default: the spec's `seed` for the weights, else a fresh one; "
                                             "0 for the perturbation and the batch)")
    q.add_argument("--batch", type=BATCH, default=2, help="batch size of the random input")
    q.add_argument("--max-activation-bytes", type=BYTES, metavar="BYTES",
                   help="refuse above this many bytes of float32 activations for the batch (default 16 GiB)")
    q.add_argument("--perturb", action=argparse.BooleanOptionalAction, default=True,
                   help="add noise to every weight and normalisation statistic first, so that zero, constant and "
                        "identity initializers (a fresh batchnorm is the identity) hide nothing")

    pr = command("probe", "train a few SGD steps and report stuck and dead units")
    pr.add_argument("spec", help="the spec file")
    pr.add_argument("--steps", type=STEPS, default=20, help="SGD steps")
    pr.add_argument("--seed", type=SEED, default=0, help="random seed of the weights and the batches")
    pr.add_argument("--lr", type=RATE, default=0.1, help="learning rate")
    pr.add_argument("--max-activation-bytes", type=BYTES, metavar="BYTES",
                    help="refuse above this many bytes of float32 activations for the batch of 16 (default 16 GiB)")
    pr.add_argument("--plot", metavar="FILE", help="also draw the per-layer chart (FILE.svg or FILE.html)")

    w = command("weights", "match a weights file to the spec's PyTorch model, print the mapping, convert it")
    w.add_argument("spec", help="the spec file")
    w.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help="the weights: a .pt/.pth/.bin/.ckpt file (torch.save of a state dict, read with "
                        "weights_only=True), a .safetensors file, a saved Keras model (.keras) or the weights "
                        "of the spec's Keras model (.weights.h5)")
    w.add_argument("--save", metavar="OUT", help="write the matched tensors under nnspec's keys to OUT "
                                                 "(.safetensors or .pt/.pth)")
    w.add_argument("--rename", action="append", default=[], metavar="REGEX=REPL",
                   help="rewrite source keys before matching by name (re.sub; the first rule that applies); "
                        "repeatable")
    w.add_argument("--no-strict", dest="strict", action="store_false",
                   help="convert what matches even when keys are left over or shapes differ")

    t = command("transfer", "carry PyTorch weights into the spec's Keras model and save it (same function)")
    t.add_argument("spec", help="the spec file")
    t.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help="the PyTorch weights: a .pt/.pth/.bin/.ckpt file (a state dict, read with "
                        "weights_only=True) or a .safetensors file, matched to the spec as `nnspec weights` does")
    t.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the Keras file to write: OUT.weights.h5 (the weights) or OUT.keras (the whole model)")
    t.add_argument("--rename", action="append", default=[], metavar="REGEX=REPL",
                   help="rewrite source keys before matching by name (re.sub; the first rule that applies); "
                        "repeatable")
    t.add_argument("--no-strict", dest="strict", action="store_false",
                   help="carry what matches even when keys are left over or shapes differ (the rest keeps the "
                        "spec's initial values)")
    t.add_argument("--force", action="store_true", help="overwrite OUT if it exists")

    im = command("import", "write the spec of an existing PyTorch module or Keras model")
    im.add_argument("framework", choices=("torch", "keras"), help="the framework the model is written in")
    im.add_argument("target", metavar="MODULE:CALLABLE",
                    help="what makes the model: a class or function (called with --args), or a model object, "
                         "e.g. torchvision.models:resnet50 or mymodels:Net (the current directory is importable)")
    im.add_argument("--args", metavar="JSON", help="arguments of the callable: a JSON object (keywords) or list")
    im.add_argument("--input", metavar="SHAPE", help="torch: one sample's shape, channels first, e.g. 3,224,224")
    im.add_argument("-o", "--output", metavar="SPEC", help="write the spec here (default: stdout)")
    im.add_argument("--name", help="the spec's `name` (default: from the model's class)")

    g = command("graph", "draw the architecture with shapes, initializers and findings")
    g.add_argument("spec", help="the spec file")
    g.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.html or FILE.svg")
    g.add_argument("--format", choices=("html", "svg"), help="default: from the output file's extension")
    return p


def _codes(text: str) -> list[str]:
    return [c.strip().upper() for c in text.split(",") if c.strip()]


def _matches(code: str, patterns: list[str]) -> bool:
    return any(code.startswith(p) for p in patterns)


def _usage_error(message: str) -> int:
    print(f"nnspec: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _globs(text: str) -> list[str]:
    return [g.strip() for g in text.split(",") if g.strip()]


def cmd_check(args) -> int:
    from nnspec import _analyse_path, formats
    from nnspec.codes import CODES
    from nnspec.compiler.pipeline import analyse_bytes
    from nnspec.config import ConfigError, Globs, load_config
    from nnspec.files import DEFAULT_EXCLUDE, ReportRefused, discover, leaves_tree, write_report

    try:
        config = load_config(args.paths, args.config)
    except ConfigError as exc:
        return _usage_error(formats._one_line(str(exc)))
    select = _codes(args.select) if args.select is not None else [c.upper() for c in config.select or []]
    ignore = _codes(args.ignore) if args.ignore is not None else [c.upper() for c in config.ignore or []]
    per_file = [(Globs([glob], config.root), [c.upper() for c in codes])
                for glob, codes in config.per_file_ignores.items()]
    from_file = f" (in {formats._one_line(config.path)})" if config.path else ""
    for pattern, origin in ([(p, "" if args.select is not None else from_file) for p in select]
                            + [(p, "" if args.ignore is not None else from_file) for p in ignore]
                            + [(c, from_file) for _, codes in per_file for c in codes]):
        if not any(code.startswith(pattern) for code in CODES):
            return _usage_error(f"`{pattern}` matches no rule code{origin} (see `nnspec rule --list`)")
    max_params = args.max_params if args.max_params is not None else config.max_params
    if max_params is not None and max_params < 1:
        return _usage_error(f"--max-params must be positive, got {max_params}")
    excluded = _globs(args.exclude) if args.exclude is not None else (
        config.exclude if config.exclude is not None else list(DEFAULT_EXCLUDE))
    excluded += config.extend_exclude + (_globs(args.extend_exclude) if args.extend_exclude else [])
    exclude = Globs(excluded, config.root)
    stdin = [p for p in args.paths if p == "-"]
    if len(stdin) > 1:
        return _usage_error("`-` (standard input) can be named once")
    if args.stdin_filename is not None and not stdin:
        return _usage_error("--stdin-filename applies only with `-` (standard input) among the paths")
    files, missing = discover([p for p in args.paths if p != "-"], specs_only=args.specs_only, exclude=exclude,
                              force_exclude=args.force_exclude, respect_gitignore=args.respect_gitignore)
    for path in missing:
        print(f"nnspec: error: {formats._one_line(path)}: no such file or directory", file=sys.stderr)
    for path in files:
        target = leaves_tree(path)
        if target is not None:
            print(f"nnspec: warning: {formats._one_line(path)} is a symbolic link that leaves the tree (to "
                  f"{formats._one_line(target)}); its lines are quoted only if it is a spec", file=sys.stderr)
    diags = []
    unreadable = False
    sources: dict = {}
    checked = list(files)
    for path in files:
        _, found = _analyse_path(path, max_params)
        for d in found:
            if d.code == "NS001" and (not os.path.isfile(path) or not os.access(path, os.R_OK)):
                unreadable = True
        diags.extend(found)
    name = args.stdin_filename or "-"
    if stdin and not (args.force_exclude and exclude.matches(name)):
        from nnspec.schema.loader import MAX_FILE_BYTES

        raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1) if hasattr(sys.stdin, "buffer") \
            else sys.stdin.read(MAX_FILE_BYTES + 1).encode("utf-8", "surrogateescape")
        sources[name] = raw.decode("utf-8", "replace").splitlines()
        checked.append(name)
        diags.extend(analyse_bytes(raw, name, max_params)[1])
    if select:
        diags = [d for d in diags if _matches(d.code, select)]
    if ignore:
        diags = [d for d in diags if not _matches(d.code, ignore)]
    if per_file:
        diags = [d for d in diags if not any(_matches(d.code, codes) and globs.matches(d.file)
                                             for globs, codes in per_file)]
    fmt = args.format
    quiet = args.quiet or (missing and not checked)  # "All checks passed (0 files)" would mislead
    if fmt == "full":
        text = formats.render_full(diags, sources)
        if not quiet:
            text += formats.summary(diags, len(checked)) + "\n"
    elif fmt == "concise":
        text = formats.render_concise(diags)
        if not quiet:
            text += formats.summary(diags, len(checked)) + "\n"
    elif fmt == "json":
        text = formats.render_json(diags)
    elif fmt == "github":
        text = formats.render_github(diags)
        formats.write_step_summary(diags, len(checked))
    elif fmt == "sarif":
        text = formats.render_sarif(diags, __version__)
    elif fmt == "gitlab":
        text = formats.render_gitlab(diags)
    else:
        text = formats.render_junit(diags, checked, strict=args.strict)
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
    from nnspec.codes import CODES, lookup

    def listing(codes) -> None:
        for c in codes:
            print(f"{c.code}  {c.severity:<7}  {c.name:<26}  {c.summary}")

    if args.list or not args.code:
        listing(CODES.values())
        return EXIT_OK
    code = lookup(args.code)
    if code is None:
        family = [c for c in CODES.values() if c.code.startswith(args.code.strip().upper())]
        if family and args.code.strip():
            listing(family)
            return EXIT_OK
        print(f"nnspec: error: unknown rule code or family {args.code!r} (see `nnspec rule --list`)", file=sys.stderr)
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

    if not args.output:
        sys.stdout.write(schema_text())
        return EXIT_OK
    try:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(schema_text())
    except OSError as exc:
        return _usage_error(f"cannot write {args.output}: {exc.strerror or exc}")
    return EXIT_OK


def cmd_initializers(args) -> int:
    from nnspec.names import did_you_mean
    from nnspec.tables import initializer_doc, initializers_table
    from nnspec.vocabulary.initializers import NAMES, REGISTRY

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
    from nnspec.diagnostics import SpecError
    from nnspec.tables import build_table

    spec, code = _load_or_report(args.spec)
    if spec is None:
        return code
    if args.max_params is None:
        from nnspec.config import ConfigError, load_config

        try:
            args.max_params = load_config([args.spec]).max_params
        except ConfigError as exc:
            return _usage_error(str(exc))
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


def cmd_weights(args) -> int:
    import nnspec
    from nnspec.weights import keras_side, match_model, parse_rename, read_source, save_weights

    spec, code = _load_or_report(args.spec)
    if spec is None:
        return code
    try:
        rules = parse_rename(args.rename)
        tensors, name = read_source(args.source, spec)
    except (ValueError, OSError, ImportError) as exc:
        return _usage_error(str(exc))
    skeleton = nnspec.build(spec, device="meta")  # keys, shapes and the module tree only
    report = match_model(skeleton, tensors, rules, name, keras_side(args.source))
    print(report)
    if args.strict and not report.ok:
        print(f"nnspec: error: the weights of {name} do not fit the spec `{spec.name}`; nothing was saved "
              "(--no-strict converts what matches)", file=sys.stderr)
        return EXIT_FOUND
    if args.save:
        out = {t: tensors[s].reshape(shape) for t, s, _, shape in report.matches}
        counters = []
        if keras_side(args.source):  # a whole PyTorch state dict: batchnorm step counters as a fresh model's
            import torch

            counters = [k for k in skeleton.state_dict() if k.endswith("num_batches_tracked")]
            out.update({k: torch.zeros((), dtype=torch.long) for k in counters})
        try:
            save_weights(out, args.save)
        except (ValueError, OSError, ImportError) as exc:
            return _usage_error(str(exc))
        print(f"saved {len(report.matches)} tensor(s) under nnspec's keys to {args.save}"
              + (f" (and {len(counters)} num_batches_tracked at 0)" if counters else ""))
    return EXIT_OK


def cmd_transfer(args) -> int:
    """PyTorch weights -> the spec's PyTorch model (matched as `weights` does) -> its Keras model
    (nnspec.transfer: layouts, gate orders and biases mapped) -> a Keras file."""
    import tempfile

    import nnspec
    from nnspec.weights import keras_side, match_model, parse_rename, read_source

    spec, code = _load_or_report(args.spec)
    if spec is None:
        return code
    out = args.output
    if not out.endswith((".weights.h5", ".keras")):
        return _usage_error(f"{out}: write OUT.weights.h5 (the weights) or OUT.keras (the whole model)")
    if os.path.lexists(out) and (not os.path.isfile(out) or not args.force):
        return _usage_error(f"{out} exists; use --force to overwrite it" if os.path.isfile(out)
                            else f"{out} exists and is not a regular file")
    try:
        rules = parse_rename(args.rename)
        tensors, name = read_source(args.source, spec)
    except (ValueError, OSError, ImportError) as exc:
        return _usage_error(str(exc))
    torch_model = nnspec.build(spec, "torch")
    report = match_model(torch_model, tensors, rules, name, keras_side(args.source))
    print(report)
    if args.strict and not report.ok:
        print(f"nnspec: error: the weights of {name} do not fit the spec `{spec.name}`; nothing was written "
              "(--no-strict carries what matches)", file=sys.stderr)
        return EXIT_FOUND
    import torch

    with torch.no_grad():
        state = torch_model.state_dict()
        for key, source_key, _, _ in report.matches:
            state[key].copy_(tensors[source_key].reshape(state[key].shape))
    keras_model = nnspec.build(spec, "keras")
    nnspec.transfer(torch_model, keras_model, spec)
    suffix = ".weights.h5" if out.endswith(".weights.h5") else ".keras"
    directory = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".nnspec-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        if suffix == ".keras":
            keras_model.save(tmp, overwrite=True)
        else:
            keras_model.save_weights(tmp, overwrite=True)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    print(f"carried {len(report.matches)} tensor(s) into the Keras model of `{spec.name}`; wrote {out}")
    return EXIT_OK


def cmd_parity(args) -> int:
    from nnspec import formats
    from nnspec.diagnostics import SpecError
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


TRAINING_RULES = ("NS201", "NS202", "NS203", "NS204", "NS205", "NS214", "NS215", "NS216", "NS217")


def cmd_probe(args) -> int:
    """Probe a spec; unlike build, errors of the training rules (NS201-NS205, NS214-NS217) do not stop it: the
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
    fmt = None
    if args.plot:
        fmt = _picture_format(args.plot, None, with_option=False)
        if fmt is None:
            return EXIT_USAGE
    from nnspec.diagnostics import SpecError

    try:
        report = run_probe(spec, steps=args.steps, seed=args.seed, lr=args.lr,
                           max_activation_bytes=args.max_activation_bytes)
    except SpecError as exc:
        sys.stderr.write(formats.render_full(exc.diagnostics))
        return EXIT_FOUND
    sys.stdout.write(report.text())
    if args.plot:
        from nnspec.diagram.chart import render_probe

        if not _write_picture(args.plot, render_probe([report], fmt)):
            return EXIT_USAGE
    return EXIT_FOUND if report.failed else EXIT_OK


def _picture_format(path: str, given: str | None, with_option: bool = True) -> str | None:
    if given:
        return given
    ext = os.path.splitext(path)[1].lower()
    fmt = {".html": "html", ".htm": "html", ".svg": "svg"}.get(ext)
    if fmt is None:
        print(f"nnspec: error: cannot tell the picture format of {path!r} (extension {ext or 'none'!r}); "
              "name a .html or .svg file" + (", or pass --format html|svg" if with_option else ""), file=sys.stderr)
    return fmt


def _write_picture(path: str, text: str) -> bool:
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    except OSError as exc:
        print(f"nnspec: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return False
    print(f"wrote {path}", file=sys.stderr)
    return True


def cmd_graph(args) -> int:
    """Draw a spec. Findings of any severity are drawn on their layers; only a spec that cannot be
    lowered to the IR (syntax, schema, unknown names) has no picture: its diagnostics, exit 1."""
    from nnspec import formats
    from nnspec.compiler.pipeline import analyse_file
    from nnspec.diagram.render import render_graph

    fmt = _picture_format(args.output, args.format)
    if fmt is None:
        return EXIT_USAGE
    if os.path.abspath(args.output) == os.path.abspath(args.spec):
        print(f"nnspec: error: the output {args.output} is the spec itself", file=sys.stderr)
        return EXIT_USAGE
    spec, diags = analyse_file(args.spec)
    if spec is None:
        sys.stderr.write(formats.render_full(diags))
        sys.stderr.write(formats.summary(diags, 1) + "\n")
        return EXIT_USAGE if any(d.code == "NS001" and not os.path.isfile(args.spec) for d in diags) else EXIT_FOUND
    if diags:
        sys.stderr.write(formats.render_concise(diags))
    return EXIT_OK if _write_picture(args.output, render_graph(spec.graph, diags, fmt)) else EXIT_USAGE


# TensorFlow's C++ start-up logs (oneDNN, CUDA probing: "I0000 00:00:1796054183.863562 11570 port.cc:153] ...",
# and absl's "WARNING: All log messages before absl::InitializeLog() ...") go straight to file descriptor 2 and,
# since TensorFlow moved to absl logging, ignore TF_CPP_MIN_LOG_LEVEL; fatal (F) lines are kept.
_TF_LOG_LINE = re.compile(rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-]+:\d+\] .*"
                          rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)"
                          rb"\r?\n?$")


@contextlib.contextmanager
def _framework_noise_filtered():
    """Run a command that may import TensorFlow with its log noise dropped from standard error (everything
    else written there is kept, in order, when the command ends). NNSPEC_DEBUG=1 keeps it all."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # Python-side warnings (retracing and the like)
    if os.environ.get("NNSPEC_DEBUG"):
        yield
        return
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured.read().splitlines(keepends=True)
                            if not _TF_LOG_LINE.match(line))
            if kept:
                os.write(2, kept)


def cmd_import(args) -> int:
    from nnspec.importing.command import run

    return run(args)


FRAMEWORK_COMMANDS = ("build", "parity", "import", "transfer")

COMMANDS = {"check": cmd_check, "rule": cmd_rule, "inits": cmd_inits, "schema": cmd_schema,
            "initializers": cmd_initializers, "compile": cmd_compile, "build": cmd_build, "parity": cmd_parity,
            "probe": cmd_probe, "graph": cmd_graph, "weights": cmd_weights,
            "import": cmd_import, "transfer": cmd_transfer}


def main(argv: list[str] | None = None) -> int:
    # nnspec's own validation models are internal: third-party pydantic plugins (observability
    # hooks) have nothing to observe there, and discovering them scans every installed package.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    words = sys.argv[1:] if argv is None else argv
    command = next((word for word in words if not word.startswith("-")), None)
    parser = _parser(command if command in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command in FRAMEWORK_COMMANDS:
            with _framework_noise_filtered():
                return COMMANDS[args.command](args)
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
