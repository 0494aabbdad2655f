"""Job files, option merging and duration parsing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hodei_api.v1 import jobs_pb2
from hodeictl import durations, errors, jobfile, tomlfile

JobOptions = jobfile.JobOptions
EXAMPLES = sorted((Path(__file__).parents[3] / "examples").glob("*.toml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(errors.InvalidSpec) as caught:
        jobfile.load(write(tmp_path, text))
    return str(caught.value)


def test_there_are_example_files() -> None:
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_file_makes_a_job_spec(path: Path) -> None:
    spec = jobfile.to_spec(jobfile.load(path))
    assert spec.name
    assert bool(spec.command) != bool(spec.script)


def test_a_full_job_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name = "build"
        script = '''
        echo "a \\\\ b"
        '''
        interpreter = "bash"
        working_dir = "/src"
        timeout = "1h30m"
        max_attempts = 3
        env = { A = "1", B = "" }
        labels = { team = "core" }
        [selector]
        os = "linux"
        [resources]
        cpus = 1.5
        memory_mb = 2048
        """,
    )
    spec = jobfile.to_spec(jobfile.load(path))
    assert spec == jobs_pb2.JobSpec(
        name="build",
        script='echo "a \\\\ b"\n',
        interpreter="bash",
        working_dir="/src",
        timeout_seconds=5400,
        max_attempts=3,
        env={"A": "1", "B": ""},
        labels={"team": "core"},
        selector={"os": "linux"},
        resources=jobs_pb2.Resources(cpus=1.5, memory_mb=2048),
    )


def test_a_numeric_timeout_is_seconds(tmp_path: Path) -> None:
    assert jobfile.load(write(tmp_path, "timeout = 2.5")).timeout_seconds == 2.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('comand = ["ls"]', "unknown key 'comand'; did you mean 'command'?"),
        ("[resources]\ncpu = 2", "unknown key 'resources.cpu'; did you mean 'resources.cpus'?"),
        ("zzz = 1", "unknown key 'zzz'"),
        ('command = "ls -l"', "'command' must be an array of strings"),
        ('command = ["ls", 1]', "'command' must be an array of strings, got array"),
        ("command = []", "'command' must not be empty"),
        ("name = 3", "'name' must be a string, got integer"),
        ("env = { PORT = 8080 }", "'env.PORT' must be a string, got integer"),
        ("labels = 1", "'labels' must be a table of strings, got integer"),
        ("timeout = true", "'timeout': True is not a duration from 0 to 366 days"),
        ('timeout = "soon"', "'timeout': 'soon' is not a duration from 0 to 366 days, such as "
                            "90s, 5m, 1h30m or 2d"),
        ("max_attempts = 1.5", "'max_attempts' must be an integer, got float"),
        ("max_attempts = 0", "'max_attempts' must be at least 1, got 0"),
        ("resources = 2", "'resources' must be a table, got integer"),
        ("[resources]\ncpus = -1", "'resources.cpus' must be a number from 0 to 4096, got -1"),
        ("[resources]\nmemory_mb = 1.5", "'resources.memory_mb' must be an integer, got float"),
        ('command = ["ls"]\nscript = "ls"', "give either 'command' or 'script', not both"),
    ],
)
def test_bad_job_files_say_which_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    error = load_error(tmp_path, text)
    assert error.startswith(f"{tmp_path / 'job.toml'}: ")
    assert message in error
    assert "\n" not in error


@pytest.mark.parametrize(
    ("text", "position"),
    [('name = "x"\ncommand = ["ls" "-l"]\n', "2:17"), ('name = "x"\ncommand = ["ls"\n', "3:1")],
)
def test_a_syntax_error_names_file_line_and_column(
    tmp_path: Path, text: str, position: str
) -> None:
    error = load_error(tmp_path, text)
    assert error.startswith(f"{tmp_path / 'job.toml'}:{position}: invalid TOML: ")
    assert "(at " not in error


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidSpec, match="job file not found"):
        jobfile.load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("1.5m", 90),
     (" 2M ", 120), ("0", 0), (45, 45), (2.5, 2.5)],
)  # fmt: skip
def test_durations(text: str | float, seconds: float) -> None:
    assert durations.parse(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5x", "-1", "1.", "1h m", "inf", True, -3])
def test_bad_durations(text: str | float) -> None:
    with pytest.raises(ValueError):
        durations.parse(text)


def test_pairs() -> None:
    assert jobfile.parse_pairs(["A=1", "B=x=y", "C="], "--env") == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(errors.UsageError, match="--label expects KEY=VALUE, got 'nope'"):
        jobfile.parse_pairs(["nope"], "--label")
    with pytest.raises(errors.UsageError):
        jobfile.parse_pairs(["=v"], "--env")


def test_the_command_line_overrides_the_file() -> None:
    base = JobOptions(
        name="file",
        script="echo file",
        interpreter="bash",
        env={"A": "file", "B": "file"},
        selector={"os": "linux"},
        cpus=1,
        timeout_seconds=60,
    )
    override = JobOptions(command=["ls"], env={"B": "cli"}, cpus=2, max_attempts=3)
    merged = jobfile.merge(base, override)
    assert merged == JobOptions(
        name="file",
        command=["ls"],
        env={"A": "file", "B": "cli"},
        selector={"os": "linux"},
        cpus=2,
        timeout_seconds=60,
        max_attempts=3,
    )
    # The file is not changed in place.
    assert base.env == {"A": "file", "B": "file"}


def test_a_command_line_script_replaces_a_file_command() -> None:
    merged = jobfile.merge(JobOptions(command=["ls"]), JobOptions(script="pwd"))
    assert (merged.command, merged.script) == (None, "pwd")
    merged = jobfile.merge(JobOptions(script="a", interpreter="bash"), JobOptions(script="b"))
    assert (merged.script, merged.interpreter) == ("b", "bash")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (JobOptions(), "nothing to run: give a command after --, --script or -f FILE"),
        (JobOptions(command=[]), "nothing to run"),
        (JobOptions(command=["ls"], script="ls"), "not both"),
        (
            JobOptions(command=["ls"], interpreter="bash"),
            "--interpreter applies only to --script",
        ),
    ],
)
def test_spec_needs_exactly_one_thing_to_run(options: JobOptions, message: str) -> None:
    with pytest.raises(errors.UsageError, match=message) as caught:
        jobfile.to_spec(options)
    assert caught.value.exit_code == 2


# ---- hostile job files: any depth, any size, bytes that are not text ---------------------

DEPTHS = [tomlfile.MAX_DEPTH + 1, 500, 5_000, 100_000]
NESTINGS = {
    "arrays": lambda n: "command = " + "[" * n + "]" * n,
    "inline tables": lambda n: "env = " + "{a = " * n + "1" + "}" * n,
    "table headers": lambda n: "[" + ".".join(["t"] * n) + "]",
    "arrays of tables": lambda n: "[[" + ".".join(["t"] * n) + "]]",
    "dotted keys": lambda n: ".".join(["k"] * n) + " = 1",
    "mixed": lambda n: "x = " + "[{a = " * (n // 2) + "1" + "}]" * (n // 2),
}


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("nesting", sorted(NESTINGS))
def test_a_job_file_nested_too_deeply_is_one_line(tmp_path: Path, nesting: str,
                                                   depth: int) -> None:
    error = load_error(tmp_path, NESTINGS[nesting](depth) + "\n")
    assert error == (f"{tmp_path / 'job.toml'}: invalid TOML: arrays or tables nested more "
                     f"than {tomlfile.MAX_DEPTH} levels deep")


@pytest.mark.parametrize("nesting", sorted(NESTINGS))
def test_nesting_up_to_the_limit_is_read(tmp_path: Path, nesting: str) -> None:
    # The table and its key take the first levels; what is left may nest.
    text = NESTINGS[nesting](tomlfile.MAX_DEPTH - 2) + "\n"
    path = write(tmp_path, text)
    try:
        jobfile.load(path)
    except errors.InvalidSpec as error:  # a wrong type or key, said in one line
        assert "nested" not in str(error) and "\n" not in str(error)


def test_a_job_file_larger_than_the_limit_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    with path.open("wb") as file:
        file.write(b'script = "')
        file.truncate(tomlfile.MAX_BYTES + 1)
    with pytest.raises(errors.InvalidSpec) as caught:
        jobfile.load(path)
    assert str(caught.value) == f"{path}: job file larger than 16 MiB"
    with pytest.raises(errors.InvalidSpec, match="larger than 16 MiB"):
        jobfile.load(Path("/dev/zero"))  # endless: read no further than the limit


def test_a_long_script_and_many_keys_are_read(tmp_path: Path) -> None:
    script = "echo " + "x" * (4 * 2**20)
    spec = jobfile.to_spec(jobfile.load(write(tmp_path, f'script = "{script}"\n')))
    assert spec.script == script
    many = "".join(f'K{i} = "{i}"\n' for i in range(20_000))
    options = jobfile.load(write(tmp_path, f'command = ["true"]\n[env]\n{many}'))
    assert len(options.env) == 20_000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'name = "a\x00b"\n', "job.toml:1:10: invalid TOML: Illegal character '\\x00'"),
        (b'# a comment \x00\n', "job.toml:1:13: invalid TOML: Found invalid character '\\x00'"),
        (b"\x00", "job.toml:1:1: invalid TOML: Invalid statement"),
        (b'name = "x"\ncommand = ["\xff"]\n', "job.toml:2:13: job file is not UTF-8 text "
                                             "(byte 0xff)"),
        (b"\xfe\xff\x00c", "job.toml:1:1: job file is not UTF-8 text (byte 0xfe)"),
        (b'name = "\xed\xa0\x80"\n', "job.toml:1:9: job file is not UTF-8 text (byte 0xed)"),
        (b"x = " + b"9" * 5000 + b"\n", "job.toml: invalid TOML: Exceeds the limit"),
        (b'"a\\nb" = 1\n', "job.toml: unknown key 'a\\nb'"),
        (b'"' + b"k" * 100_000 + b'" = 1\n', "job.toml: unknown key 'kkkkkkkk"),
        (b'timeout = "' + b"9" * 100_000 + b'"\n', "job.toml: 'timeout': '99999"),
        (b"[resources]\nmemory_mb = " + b"9" * 4000 + b"\n",
         "job.toml: 'resources.memory_mb' must be at most 1073741824, got 9999"),
        (b"max_attempts = 101\n", "'max_attempts' must be at most 100, got 101"),
        (b"[resources]\ncpus = nan\n", "'resources.cpus' must be a number from 0 to 4096, "
                                       "got nan"),
        (b'timeout = "367d"\n', "'timeout': '367d' is not a duration from 0 to 366 days"),
        (b"timeout = 31708800\n", "'timeout': 31708800 is not a duration from 0 to 366 days"),
        (b"[env]\n\"A\\u0000B\" = 1\n", "job.toml: 'env.A\\x00B' must be a string"),
    ],
)
def test_bytes_a_job_file_should_not_hold_are_one_line(
    tmp_path: Path, data: bytes, message: str,
) -> None:
    path = tmp_path / "job.toml"
    path.write_bytes(data)
    with pytest.raises(errors.InvalidSpec) as caught:
        jobfile.load(path)
    assert message in str(caught.value)
    assert str(caught.value).count("\n") == 0
    assert len(str(caught.value)) < 300, str(caught.value)[:300]


@pytest.mark.parametrize("name", ["a\x00b", "x" * 5000, "missing-dir/../../\n"])
def test_a_job_file_name_that_cannot_be_opened_is_one_line(tmp_path: Path, name: str) -> None:
    with pytest.raises(errors.InvalidSpec) as caught:
        jobfile.load(tmp_path / name)
    assert caught.value.exit_code == 2
    assert "job file" in str(caught.value)


def test_a_directory_is_not_a_job_file(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidSpec, match="cannot read job file: Is a directory"):
        jobfile.load(tmp_path)
