"""GitHub deployments client against a fake REST API with real pagination and rate-limit headers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from iras.config import Settings
from iras.integrations.base import SourceUnavailable
from iras.integrations.github import GitHubDeploymentSource
from iras.integrations.http import RetryPolicy
from tests.fakes.servers import FakeGitHub, Reply

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
START, END = T0 - timedelta(hours=6), T0 + timedelta(minutes=5)
SHA = "{:040x}"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(token="ghp_test") as fake:
        yield fake  # type: ignore[misc]


def _source(
    github: FakeGitHub, policy: RetryPolicy | None = None, per_page: int = 100, **overrides: object
) -> GitHubDeploymentSource:
    values: dict[str, object] = {
        "github_token": "ghp_test",
        "github_api_url": github.url,
        "github_repos": "checkout=acme/checkout,cart=acme/cart",
        **overrides,
    }
    source = GitHubDeploymentSource(
        Settings(**values),  # type: ignore[arg-type]
        policy=policy
        or RetryPolicy(attempts=3, backoff_seconds=0, max_sleep_seconds=5, sleep=lambda _: None),
    )
    source.per_page = per_page
    return source


def test_it_lists_the_window_s_deployments_with_their_latest_status(github: FakeGitHub) -> None:
    github.add_deployment(
        "acme/checkout",
        sha=SHA.format(1),
        ref="v2.4.0",
        created_at=T0 - timedelta(minutes=12),
        creator="alice",
        description="release 2.4.0",
        states=["pending", "in_progress", "success"],
    )
    github.add_deployment(
        "acme/checkout", sha=SHA.format(2), created_at=T0 - timedelta(hours=2), states=["failure"]
    )
    github.add_deployment(
        "acme/checkout", sha=SHA.format(3), created_at=T0 - timedelta(minutes=1)
    )  # no status yet
    github.add_deployment(
        "acme/checkout", sha=SHA.format(4), created_at=T0 - timedelta(days=3), states=["success"]
    )
    github.add_deployment(
        "acme/checkout", sha=SHA.format(5), created_at=T0 - timedelta(minutes=5), environment="staging"
    )

    found = _source(github).fetch_deployments(["checkout"], START, END)

    by_sha = {d.sha: d for d in found}
    assert set(by_sha) == {SHA.format(1), SHA.format(2), SHA.format(3)}
    newest_release = by_sha[SHA.format(1)]
    assert (newest_release.service, newest_release.ref, newest_release.creator) == (
        "checkout",
        "v2.4.0",
        "alice",
    )
    assert (newest_release.description, newest_release.environment) == ("release 2.4.0", "production")
    assert newest_release.created_at == T0 - timedelta(minutes=12)
    assert newest_release.status == "success"
    assert by_sha[SHA.format(2)].status == "failure"
    assert by_sha[SHA.format(3)].status is None
    listing = github.calls("/repos/acme/checkout/deployments")[0]
    assert listing.param("environment") == "production"
    assert listing.header("Authorization") == "Bearer ghp_test"
    assert listing.header("X-GitHub-Api-Version") == "2022-11-28"


def test_it_follows_link_pages_and_stops_once_a_page_is_older_than_the_window(github: FakeGitHub) -> None:
    for i in range(10):  # one every hour, newest at T0 - 30 min
        github.add_deployment(
            "acme/checkout", sha=SHA.format(i), created_at=T0 - timedelta(minutes=30) - timedelta(hours=i)
        )

    found = _source(github, per_page=2).fetch_deployments(["checkout"], START, END)

    assert sorted(d.sha for d in found) == sorted(SHA.format(i) for i in range(6))  # 0.5 h .. 5.5 h ago
    pages = [r.param("page") for r in github.calls() if r.path == "/repos/acme/checkout/deployments"]
    assert pages == [
        None,
        "2",
        "3",
        "4",
    ]  # page 4 holds the first deployment older than 6 h; 5 is never asked


def test_a_page_limit_bounds_a_huge_history(github: FakeGitHub) -> None:
    for i in range(20):
        github.add_deployment("acme/checkout", sha=SHA.format(i), created_at=T0 - timedelta(minutes=i))

    found = _source(github, per_page=2, github_max_pages=3).fetch_deployments(["checkout"], START, END)

    assert len(found) == 6
    assert len([r for r in github.calls() if r.path == "/repos/acme/checkout/deployments"]) == 3


def test_an_exhausted_rate_limit_that_resets_later_is_unavailable_with_a_clear_message(
    github: FakeGitHub,
) -> None:
    github.add_deployment("acme/checkout", sha=SHA.format(1), created_at=T0 - timedelta(minutes=10))
    github.remaining = 0
    github.reset_at = int(time.time()) + 1800

    with pytest.raises(SourceUnavailable) as caught:
        _source(github).fetch_deployments(["checkout"], START, END)

    message = str(caught.value)
    assert "rate limited (HTTP 403): API rate limit exceeded" in message
    assert "the limit lifts in 1" in message and "not waiting" in message
    assert len(github.calls()) == 1


def test_a_rate_limit_that_resets_within_the_policy_is_waited_for(github: FakeGitHub) -> None:
    github.add_deployment("acme/checkout", sha=SHA.format(1), created_at=T0 - timedelta(minutes=10))
    github.remaining = 0
    github.reset_at = int(time.time()) + 2
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        github.remaining = github.rate_limit  # the window rolled over while we slept

    policy = RetryPolicy(attempts=3, backoff_seconds=0, max_sleep_seconds=5, sleep=sleep)
    found = _source(github, policy=policy).fetch_deployments(["checkout"], START, END)

    assert [d.sha for d in found] == [SHA.format(1)]
    assert len(waited) == 1 and 0 < waited[0] <= 3


def test_a_secondary_rate_limit_honours_retry_after(github: FakeGitHub) -> None:
    github.add_deployment("acme/checkout", sha=SHA.format(1), created_at=T0 - timedelta(minutes=10))
    github.script(
        "/repos/acme/checkout/deployments",
        Reply(403, {"message": "You have exceeded a secondary rate limit."}, {"Retry-After": "1"}),
    )
    waited: list[float] = []
    policy = RetryPolicy(attempts=3, backoff_seconds=0, max_sleep_seconds=5, sleep=waited.append)

    assert len(_source(github, policy=policy).fetch_deployments(["checkout"], START, END)) == 1
    assert waited == [1.0]


def test_a_spent_budget_during_status_lookups_keeps_the_deployments(github: FakeGitHub) -> None:
    for i in range(3):
        github.add_deployment(
            "acme/checkout", sha=SHA.format(i), created_at=T0 - timedelta(minutes=10 + i), states=["success"]
        )
    github.remaining = 2  # the listing and one status lookup
    github.reset_at = int(time.time()) + 1800

    found = _source(github).fetch_deployments(["checkout"], START, END)

    assert [d.status for d in sorted(found, key=lambda d: d.created_at, reverse=True)] == [
        "success",
        None,
        None,
    ]
    assert len(github.calls()) == 3  # list, one status, one refused status; then no more spending


def test_services_without_a_mapped_repository(github: FakeGitHub) -> None:
    github.add_deployment("acme/cart", sha=SHA.format(7), created_at=T0 - timedelta(minutes=3))

    assert [d.service for d in _source(github).fetch_deployments(["cart", "payments-db"], START, END)] == [
        "cart"
    ]
    with pytest.raises(SourceUnavailable, match="no repository mapped for payments-db; set GITHUB_REPOS"):
        _source(github).fetch_deployments(["payments-db"], START, END)


def test_bad_credentials_and_unknown_repositories_are_reported_as_github_says(github: FakeGitHub) -> None:
    with pytest.raises(SourceUnavailable, match="HTTP 401: Bad credentials"):
        _source(github, github_token="ghp_wrong").fetch_deployments(["checkout"], START, END)
    with pytest.raises(SourceUnavailable, match=r"acme/gone/deployments: HTTP 404: Not Found"):
        _source(github, github_repos="checkout=acme/gone").fetch_deployments(["checkout"], START, END)
