"""``optimlab escape``: which remedy frees which trap, how often, at what cost."""

from __future__ import annotations

import click

from .options import jobs_option, out_option, overwrite_option, publish, run_folder


def _names(valid, option: str):
    def parse(ctx: click.Context, text: str | None):
        if text is None:
            return None
        chosen = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in chosen if t not in valid]
        if unknown or not chosen:
            raise click.BadParameter(
                f"unknown {', '.join(map(repr, unknown)) or 'empty list'}; valid: "
                + ", ".join(valid),
                ctx,
                param_hint=option,
            )
        return chosen

    return parse


def _names_option(kind: str):
    """``--problems``, ``--methods`` or ``--remedies``: names that ``optimlab list`` shows."""
    return click.option(
        f"--{kind}",
        default=None,
        help=f"Comma-separated {kind} (default: all; `optimlab list escape-{kind}`).",
    )


def _report(report, folder):
    """The lab's report: the success table per problem, and the study's figures."""
    from ..lab.report import Document, Figure, Section, Table

    sections = []
    for problem in dict.fromkeys(s.problem for s in report.summaries):
        rows = [s for s in report.summaries if s.problem == problem]
        table = Table(
            f"escape-{problem}",
            f"{problem}: successes over seeds, steps and seconds to reach the target",
            ["method", "remedy", "success", "95% interval", "median steps", "median seconds",
             "mean seconds per run"],
            [[s.method, s.remedy, f"{s.successes}/{s.seeds}",
              f"{s.ci_low:.2f}-{s.ci_high:.2f}",
              "-" if s.median_steps_to_target is None else f"{s.median_steps_to_target:g}",
              "-" if s.median_seconds_to_target is None else f"{s.median_seconds_to_target:.3g}",
              f"{s.mean_seconds:.3g}"] for s in rows],
        )  # fmt: skip
        sections.append(Section(problem, tables=[table]))
    figures = [
        Figure(p.relative_to(report.out_dir).as_posix(), p.stem.replace("_", " "))
        for p in report.files
        if p.suffix == ".png"
    ]
    if figures:
        sections.append(Section("Figures", figures=figures))
    return Document(
        "Escaping saddles and local minima",
        f"{len(report.records)} runs in {report.seconds:.0f} s",
        sections,
    )


@click.command()
@click.option(
    "--seeds",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Runs per problem, method and remedy.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="At most 2 seeds: a first look, whose rates are rough.",
)
@_names_option("problems")
@_names_option("methods")
@_names_option("remedies")
@out_option(help="Run folder (default: runs/escape-<date>-<time>).")
@overwrite_option
@jobs_option(help="Worker processes.")
@click.option("--debug", is_flag=True, expose_value=False, help="Show the full traceback.")
@click.pass_context
def escape(ctx: click.Context, seeds, quick, problems, methods, remedies, out, overwrite,
           jobs) -> None:  # fmt: skip
    """Gradient noise, random restarts and simulated annealing on saddles and many minima."""
    from ..lab.escape.problems import PROBLEMS
    from ..lab.escape.study import METHODS, REMEDIES, escape_main

    problems = _names(list(PROBLEMS), "--problems")(ctx, problems)
    methods = _names(list(METHODS), "--methods")(ctx, methods)
    remedies = _names(list(REMEDIES), "--remedies")(ctx, remedies)
    folder = run_folder(ctx, out, 0, dict(seeds=seeds, quick=quick, problems=problems,
                                          methods=methods, remedies=remedies))  # fmt: skip
    report = escape_main(folder.path, seeds=seeds, quick=quick, processes=jobs,
                         problems=problems, methods=methods, remedies=remedies)  # fmt: skip
    publish(folder, _report(report, folder))
