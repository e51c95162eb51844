"""behave hooks: read the settings, start the stack once, give each scenario a clean state.

The hooks only call into ``support/``; everything they start is stopped by a
cleanup that runs whatever happened.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from behave import register_type
from behave.fixture import fixture, use_fixture

from support.evidence import allure as evidence
from support.evidence import report_meta
from support.evidence.progress import ProgressLine
from support.evidence.summary import RunSummary
from support.run import exits
from support.run.gherkin_types import TYPES
from support.run.repeat import expand_repeats, repeat_of
from support.run.startup_errors import STARTUP_ERRORS, check_run, one_line
from support.run.suite import install_signal_handlers, start_suite

register_type(**TYPES)


@fixture
def chaos_suite(context, settings):
    suite = start_suite(settings)
    try:
        yield suite
    finally:
        suite.close()


def before_all(context):
    install_signal_handlers()
    exits.record_interrupts()  # exit 130 after SIGINT, 143 after SIGTERM, once everything is cleaned
    runner = context._runner  # noqa: SLF001 - behave gives hooks no other handle on its formatters and features
    runner.formatters[:] = report_meta.one_allure_formatter(runner.formatters)
    context.summary = RunSummary(report_meta.results_dir(context.config.format, context.config.outfiles))
    report_meta.prepare_results_dir(context.summary.results)  # this run's results only; history/ is kept
    report_meta.prepare_junit_dir(Path(context.config.junit_directory) if context.config.junit else None)
    context.progress = ProgressLine()
    try:
        settings = check_run(runner.features, context.config, runner.step_registry.find_match)
        expand_repeats(runner.features, settings.repeat)  # -D repeat=N, @repeat.N: N runs of a scenario
        context.suite = use_fixture(chaos_suite, context, settings)
    except STARTUP_ERRORS as error:
        # behave would report any exception here as a traceback and "aborted by user";
        # nothing is running yet (a failed start stops what it started), so exit at once
        print(f"chaos-suite: {one_line(error)}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(2)


def after_all(context):
    context.progress.close()
    suite = getattr(context, "suite", None)  # absent when the start was interrupted
    if suite is not None:
        report_meta.write_metadata(context.summary.results, suite.stack.versions, suite.stack.backend)
    context.summary.finish()
    if suite is not None and suite.scenarios == 0 and not context.aborted:
        print("chaos-suite: no scenario ran; check --tags (the suite's are @chaos) and the paths", file=sys.stderr)
        exits.fail_run(2)


def before_scenario(context, scenario):
    context.chaos = context.suite.begin_scenario(scenario.name, repeat_of(scenario))
    evidence.begin_scenario(context.chaos, scenario.filename, scenario.feature.name, scenario.effective_tags)


def before_step(context, step):
    context.progress.follow(context.chaos)


def after_step(context, step):
    context.progress.pause()


def after_scenario(context, scenario):
    state = getattr(context, "chaos", None)
    if state is None:  # before_scenario failed before the scenario had a state: it injected nothing
        context.summary.add_scenario(None, scenario)
        return
    try:
        context.suite.end_scenario(state)
    finally:
        context.summary.add_scenario(state, scenario)  # first: a repeated scenario's last run attaches all runs
        evidence.attach_scenario(state, failed=scenario.status == "failed")
        del context.chaos
