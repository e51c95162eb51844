import pytest

from support.core.config import Settings, SettingsError, load_settings, read_ini_userdata


def test_defaults_when_nothing_is_given():
    assert load_settings({}, {}, {}) == Settings()


def test_cli_beats_environment_beats_ini():
    ini = {"load_heavy": "150", "backend": "process"}
    userdata = {"load_heavy": "300", "backend": "process"}  # load_heavy came from -D
    settings = load_settings(userdata, ini, {"CHAOS_LOAD_HEAVY": "10", "CHAOS_BACKEND": "docker"})
    assert settings.load_heavy == 300.0
    assert settings.backend == "docker"


def test_ini_value_used_without_cli_or_environment():
    assert load_settings({"load_light": "7"}, {"load_light": "7"}, {}).load_light == 7.0


def test_unknown_setting_lists_the_valid_ones():
    with pytest.raises(SettingsError, match=r"unknown setting 'bakend'.*backend"):
        load_settings({"bakend": "docker"}, {}, {})


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("load_heavy", "fast", "is not a number"),
        ("recovery_min_successes", "2.5", "is not a whole number"),
        ("keep_work_dir", "maybe", "is not true or false"),
        ("backend", "k8s", "is not a backend"),
        ("load_write_fraction", "1.5", "between 0 and 1"),
        ("load_heavy", "-1", "greater than 0"),
    ],
)
def test_malformed_values_are_refused_in_one_line(name, value, fragment):
    with pytest.raises(SettingsError) as error:
        load_settings({name: value}, {}, {})
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_named_load_levels():
    settings = Settings(load_light=1, load_steady=2, load_heavy=3)
    assert [settings.load_rate(level) for level in ("light", "steady", "heavy")] == [1, 2, 3]
    with pytest.raises(SettingsError, match="unknown load level"):
        settings.load_rate("extreme")


def test_repository_behave_ini_is_valid(tmp_path):
    from pathlib import Path

    ini = read_ini_userdata(Path(__file__).resolve().parents[1] / "behave.ini")
    assert ini["backend"] == "process"
    load_settings(ini, ini, {})


@pytest.mark.parametrize(
    "text, seconds", [("10 seconds", 10.0), ("1 second", 1.0), ("0.5 s", 0.5), ("250 ms", 0.25), ("2 minutes", 120.0)]
)
def test_durations_in_the_gherkin_carry_their_unit(text, seconds):
    import parse

    from support.run.gherkin_types import TYPES

    assert parse.parse("within {d:Duration}", f"within {text}", TYPES)["d"] == pytest.approx(seconds)
    assert parse.parse("within {d:Duration}", "within 10 parsecs", TYPES) is None


@pytest.mark.parametrize("text", ["-1 seconds", ".5 seconds", "+2 s", "1.2.3 seconds", "1. ms"])
def test_a_malformed_duration_is_refused_naming_the_forms_it_takes(text):
    import parse

    from support.run.gherkin_types import DURATION_FORMS, TYPES

    with pytest.raises(ValueError) as error:
        parse.parse("within {d:Duration}", f"within {text}", TYPES)
    assert str(error.value) == f"{text!r} is not a duration; write it as {DURATION_FORMS}"


@pytest.mark.parametrize(
    "pattern, text, fragment",
    [
        ("{n:Count} users exist", "-3 users exist", "'-3' is not a whole number"),
        ("{n:Count} users exist", "2.5 users exist", "'2.5' is not a whole number"),
        ("a load of {r:Number} per second", "a load of .5 per second", "'.5' is not a number"),
        ("{level:Level} load", "extreme load", "'extreme' is not a load level; use one of: light, steady, heavy"),
    ],
)
def test_other_malformed_parameters_say_what_they_take(pattern, text, fragment):
    import parse

    from support.run.gherkin_types import TYPES

    with pytest.raises(ValueError, match=fragment):
        parse.parse(pattern, text, TYPES)


@pytest.mark.parametrize(
    "pattern, text, value",
    [
        ("{n:Count} users exist", "12 users exist", 12),
        ("a load of {r:Number} per second", "a load of 2.5 per second", 2.5),
        ("{level:Level} load", "heavy load", "heavy"),
    ],
)
def test_well_formed_parameters_still_parse(pattern, text, value):
    import parse

    from support.run.gherkin_types import TYPES

    assert list(parse.parse(pattern, text, TYPES).named.values()) == [value]
