"""`python -m collectors check`, the regression gate for CI: its exit status, table, Markdown
and JUnit report against the real server and the compare fleet (1.3.0 is 30 % slower than
1.2.0; variants a and b are the same traffic split in two)."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from collectors import check
from perfdash.api.models import ApiToken
from tests.compare.conftest import NOW, fleet  # noqa: F401 - the fixture, stored for the live server
from tests.conftest import ROOT, free_port, server_env

VERSIONS = ["--baseline", "tag.version=1.2.0", "--candidate", "tag.version=1.3.0"]
# The fleet's points lie in [NOW - 3000, NOW - 30): these ranges hold all of them however long
# after the fleet's import the test runs.
RANGES = [
    *("--baseline-from", str(int(NOW) - 3060), "--baseline-to", str(int(NOW))),
    *("--candidate-from", str(int(NOW) - 3060), "--candidate-to", str(int(NOW))),
]


@pytest.fixture
def stored(clean_tables, fleet, live_server_url) -> tuple[str, str]:  # noqa: F811 - fleet is the fixture
    """The live server's URL and a read token, over the fleet committed for it to see."""
    return live_server_url, ApiToken.issue("ci", ["read"])[1]


def command(url: str, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in server_env().items() if k not in ("PERFDASH_URL", "PERFDASH_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "collectors", "check", "--url", url, "--token", token, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_the_exit_status_says_regression_no_regression_or_could_not_decide(stored):
    url, token = stored

    slower = command(
        url, token, "--metric", "agent_response_ms", *VERSIONS, *RANGES, "--max-regression", "5%"
    )
    assert slower.returncode == 1, slower.stderr
    assert slower.stderr == ""
    header, row = slower.stdout.splitlines()[:2]
    assert header.split()[:4] == ["metric", "stat", "baseline", "candidate"]
    assert row.startswith("agent_response_ms  p95") and "REGRESSION" in row
    change = re.search(r"\)\s+([+-][\d.]+) % \[", row)  # "+28.9 % [+24.1 %, +33.8 %]" after the counts
    assert change and 20 < float(change[1]) < 40
    assert "1 of 1 metric slower by more than 5.0 %" in slower.stdout

    tolerant = command(
        url, token, "--metric", "agent_response_ms", *VERSIONS, *RANGES, "--max-regression", "0.5"
    )
    assert tolerant.returncode == 0, tolerant.stdout + tolerant.stderr
    assert "REGRESSION" not in tolerant.stdout

    # The same traffic split in two: its p95s differ by 5 % by chance (the estimate does not
    # depend on the test's time; only the interval's blocks do), under the 10 % accepted.
    same = ["--baseline", "tag.variant=a", "--candidate", "tag.variant=b"]
    identical = command(
        url, token, "--metric", "agent_response_ms", *same, *RANGES, "--max-regression", "10%"
    )
    assert identical.returncode == 0, identical.stdout + identical.stderr

    unknown = command(
        url, token, "--metric", "agent_response_ms", "--metric", "no_such_ms", *VERSIONS, *RANGES
    )
    assert unknown.returncode == 2  # even though agent_response_ms regressed
    assert unknown.stderr.strip() == "perfdash check: no_such_ms: HTTP 404: unknown metric 'no_such_ms'"
    assert "REGRESSION" in unknown.stdout and "error" in unknown.stdout

    nobody = ["--baseline", "tag.version=1.2.0", "--candidate", "agent=agent-nobody"]
    insufficient = command(url, token, "--metric", "agent_response_ms", *nobody, *RANGES)
    assert insufficient.returncode == 2, insufficient.stdout + insufficient.stderr
    assert "insufficient data" in insufficient.stdout
    assert "candidate has 0 points, fewer than the 100" in insufficient.stdout
    [said] = insufficient.stderr.splitlines()
    assert said.startswith("perfdash check: agent_response_ms: insufficient data: candidate has 0 points")
    allowed = command(url, token, "--metric", "agent_response_ms", *nobody, *RANGES, "--allow-insufficient")
    assert allowed.returncode == 0 and "insufficient data" in allowed.stdout and allowed.stderr == ""

    ingest_only = ApiToken.issue("collector", ["ingest"])[1]
    for bad in ("pd_not_a_token", ingest_only):
        refused = command(url, bad, "--metric", "agent_response_ms", *VERSIONS, *RANGES)
        assert refused.returncode == 2 and refused.stdout == ""
        assert refused.stderr.startswith("perfdash check: HTTP 401: invalid or revoked token")
        assert len(refused.stderr.splitlines()) == 1 and "Traceback" not in refused.stderr

    bad_window = command(url, token, "--metric", "agent_response_ms", *VERSIONS, "--window", "1y")
    assert bad_window.returncode == 2 and "(parameter window)" in bad_window.stderr


@pytest.mark.slow
def test_markdown_for_a_pull_request_and_a_junit_report_with_the_regression_as_a_failure(
    stored, tmp_path, capsys
):
    url, token = stored
    report = tmp_path / "perfdash.xml"
    status = check.main(
        [
            *("--url", url, "--token", token),
            *("--metric", "agent_response_ms", "--metric", "llm_call_ms"),
            *VERSIONS,
            *RANGES,
            "--allow-insufficient",  # llm_call_ms has no version tag
            *("--format", "markdown", "--junit", str(report)),
        ]
    )
    assert status == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "### perfdash check: regression"
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| metric | stat | baseline | candidate | change [95% interval] | verdict |"
    assert table[1] == "|---|---|---:|---:|---:|---|"
    slower, other = (row.strip("|").split(" | ") for row in table[2:])
    assert slower[0].strip() == "`agent_response_ms`" and slower[5].strip() == "**REGRESSION**"
    assert other[0].strip() == "`llm_call_ms`" and other[5].strip() == "insufficient data"
    assert (
        "- `llm_call_ms`: baseline has 0 points, fewer than the 100 a comparison needs. candidate has 0"
        in "\n".join(lines)
    )

    suite = ET.parse(report).getroot().find("testsuite")
    assert [suite.get(k) for k in ("tests", "failures", "errors", "skipped")] == ["2", "1", "0", "1"]
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"agent_response_ms p95", "llm_call_ms p95"}
    failure = cases["agent_response_ms p95"].find("failure")
    assert failure is not None and "slower by more than 5.0 %" in failure.get("message")
    assert cases["llm_call_ms p95"].find("skipped") is not None


@pytest.mark.slow
def test_insufficient_data_is_an_error_case_or_with_allow_insufficient_a_skipped_one(
    stored, tmp_path, capsys
):
    url, token = stored
    args = [
        *("--url", url, "--token", token, "--metric", "agent_response_ms"),
        *("--baseline", "tag.version=1.2.0", "--candidate", "agent=agent-nobody", *RANGES),
    ]
    for extra, status, kind in [([], 2, "error"), (["--allow-insufficient"], 0, "skipped")]:
        report = tmp_path / f"{kind}.xml"
        assert check.main([*args, *extra, "--junit", str(report)]) == status
        [case] = ET.parse(report).getroot().iter("testcase")
        assert case.find(kind) is not None and "candidate has 0 points" in case.find(kind).get("message")
    capsys.readouterr()


def test_an_unreachable_server_is_exit_2_in_one_line():
    run = command(f"http://127.0.0.1:{free_port()}", "pd_x", "--metric", "agent_response_ms", *VERSIONS)
    assert run.returncode == 2 and run.stdout == ""
    [line] = run.stderr.splitlines()
    assert (
        line.startswith("perfdash check: no answer from http://127.0.0.1:") and "Connection refused" in line
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "--metric"),
        (["--metric", "m", "--max-regression", "lots"], "--max-regression"),
        (["--metric", "m", "--max-regression", "150%"], "from 0 to 1"),
        (["--metric", "m", "--baseline", "version=1.2.0"], "use node=, agent= or tag.NAME="),
        (["--metric", "m", "--baseline", "tag.version"], "is not KEY=VALUE"),
        (["--metric", "m", "--baseline", "node=a", "--baseline", "node=b"], "gives node twice"),
        (["--metric", "m", "--baseline-from", "yesterday"], "RFC 3339"),
        (["--metric", "m", "--baseline-to", "2026-12-05T10:00:00"], "RFC 3339"),
        (["--metric", "m", "--stat", "p42"], "invalid choice"),
        (["--metric", "m", "--confidence", "0.999"], "0.5 to 0.99"),
        (["--metric", "m", "--format", "html"], "invalid choice"),
        (["--metric", "m", "--url", "ftp://x"], "http(s)://"),
    ],
)
def test_a_bad_argument_is_exit_2_naming_it(args, words, capsys, monkeypatch):
    monkeypatch.setenv("PERFDASH_TOKEN", "pd_x")
    monkeypatch.setenv("PERFDASH_URL", "http://127.0.0.1:1")
    with pytest.raises(SystemExit) as exited:
        check.main(args)
    assert exited.value.code == 2
    assert words in capsys.readouterr().err


def test_the_parameters_sent_are_compare_s_with_the_baseline_as_a_and_max_regression_as_min_effect():
    args = check.build_parser().parse_args(
        [
            *("--metric", "m", "--baseline", "tag.version=1.2.0", "--baseline", "node=node-1"),
            *("--candidate", "tag.version=1.3.0", "--candidate-from", "2026-12-05T10:00:00Z"),
            *("--window", "2h", "--stat", "p99", "--max-regression", "7.5%"),
        ]
    )
    assert check.query(args) == [
        ("a.tag.version", "1.2.0"),
        ("a.node", "node-1"),
        ("b.tag.version", "1.3.0"),
        ("b.from", "2026-12-05T10:00:00Z"),
        ("window", "2h"),
        ("stat", "p99"),
        ("min_effect", "0.075"),
        ("confidence", "0.95"),
    ]


ANSWER = {
    "metric": "agent_response_ms",
    "a": {"count": 4012, "p95": {"value": 1883.24, "lo": 1850.0, "hi": 1910.0}},
    "b": {"count": 3988, "p95": {"value": 2447.9, "lo": 2400.0, "hi": 2490.0}},
    "diff": {"p95": {"rel": 0.2998, "lo": 0.241, "hi": 0.362, "verdict": "slower"}},
    "verdict": "slower",
    "stat": "p95",
    "method": "cluster bootstrap",
    "notes": ["Quantiles are read from sketches ..."],
    "summary": "keys the gate does not know are ignored",
}


def test_a_row_reads_the_stat_s_values_change_and_verdict_from_the_answer():
    row = check.row_of("agent_response_ms", "p95", ANSWER)
    assert check.cells(row) == [
        "agent_response_ms",
        "p95",
        "1,883 (n=4,012)",
        "2,448 (n=3,988)",
        "+30.0 % [+24.1 %, +36.2 %]",
        "REGRESSION",
    ]
    none = {"count": 0, "p95": None}
    insufficient = {**ANSWER, "b": none, "diff": {"p95": dict.fromkeys(("rel", "lo", "hi"))}}
    insufficient["diff"]["p95"]["verdict"] = "insufficient_data"
    assert check.cells(check.row_of("agent_response_ms", "p95", insufficient))[3:] == [
        f"{check.MISSING} (n=0)",
        check.MISSING,
        "insufficient data",
    ]
    unknown = {**ANSWER, "diff": {"p95": {**ANSWER["diff"]["p95"], "verdict": "?"}}}
    with pytest.raises(ValueError):
        check.row_of("agent_response_ms", "p95", unknown)
