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

from support import evidence
from support.config import load_settings, read_ini_userdata
from support.errors import STARTUP_ERRORS, one_line
from support.gherkin_types import TYPES
from support.suite import install_signal_handlers, start_suite

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
    try:
        settings = load_settings(context.config.userdata, read_ini_userdata(Path("behave.ini")))
        context.suite = use_fixture(chaos_suite, context, settings)
    except STARTUP_ERRORS as error:
        # behave would report any exception here as a traceback and "aborted by user";
        # nothing is running yet (a failed start stops what it started), so exit at once
        print(f"chaos-suite: {one_line(error)}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(2)


def before_scenario(context, scenario):
    context.chaos = context.suite.begin_scenario(scenario.name)


def after_scenario(context, scenario):
    state = context.chaos
    try:
        context.suite.end_scenario(state)
    finally:
        evidence.attach_scenario(state, failed=scenario.status == "failed")
        del context.chaos
