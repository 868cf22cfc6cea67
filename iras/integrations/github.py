"""Recent deployments from the GitHub REST API.

For each affected service with a repository in `GITHUB_REPOS`:

1. list the repository's deployments to the configured environment
   (`GET /repos/{owner}/{repo}/deployments?environment=…`, newest first),
   following the `Link: rel="next"` pages until one is older than the window
   or `GITHUB_MAX_PAGES` is reached;
2. keep those created inside the window and read each one's latest status
   (`GET …/deployments/{id}/statuses?per_page=1`, newest first).

Rate limits: an exhausted budget (403/429 with `X-RateLimit-Remaining: 0`) or a
secondary limit (`Retry-After`) is waited for when it lifts within the retry
policy, otherwise the fetch fails with a message saying when it lifts. A failed
*status* lookup only leaves that deployment's status unknown.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import requests

from iras.config import Settings
from iras.integrations.base import SourceUnavailable
from iras.integrations.http import RetryPolicy, json_body, new_session, request
from iras.schemas import Deployment

log = logging.getLogger(__name__)

PER_PAGE = 100
MAX_STATUS_LOOKUPS = 20  # per service: deployments inside one incident window are few


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


class GitHubDeploymentSource:
    name = "github"

    def __init__(self, settings: Settings, *, policy: RetryPolicy | None = None) -> None:
        if not settings.github_token:
            raise ValueError("GITHUB_TOKEN is not set")
        self.api_url = settings.github_api_url.rstrip("/")
        self.token = settings.github_token
        self.repos = dict(settings.github_repos)
        self.environment = settings.environment
        self.max_pages = settings.github_max_pages
        self.per_page = PER_PAGE
        self.timeout = settings.http_timeout_seconds
        self.policy = policy or RetryPolicy.from_settings(settings)

    def _session(self) -> requests.Session:
        return new_session(
            {
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
        )

    def fetch_deployments(self, services: list[str], start: datetime, end: datetime) -> list[Deployment]:
        mapped = {service: self.repos[service] for service in services if service in self.repos}
        if not mapped:
            raise SourceUnavailable(
                f"github: no repository mapped for {', '.join(services) or 'any service'}; "
                "set GITHUB_REPOS=service=owner/repo,..."
            )
        unmapped = sorted(set(services) - set(mapped))
        if unmapped:
            log.info("github: no repository mapped for %s", ", ".join(unmapped))
        deployments: list[Deployment] = []
        with self._session() as session:
            for service, repo in mapped.items():
                in_window = [
                    item
                    for item in self._list_since(session, repo, start)
                    if start <= _parse_time(item["created_at"]) <= end
                ]
                statuses_ok = True
                for item in in_window[:MAX_STATUS_LOOKUPS]:
                    status = None
                    if statuses_ok:
                        try:
                            status = self._latest_status(session, repo, int(item["id"]))
                        except SourceUnavailable as exc:
                            # Keep the deployment, the evidence that matters; stop spending a spent budget.
                            log.warning("github: status of deployment %s unknown: %s", item["id"], exc)
                            statuses_ok = False
                    deployments.append(self._deployment(service, item, status))
        return deployments

    def _get(
        self, session: requests.Session, url: str, params: dict[str, str] | None = None
    ) -> requests.Response:
        return request(
            session, "GET", url, source="github", timeout=self.timeout, policy=self.policy, params=params
        )

    def _list_since(self, session: requests.Session, repo: str, start: datetime) -> list[dict[str, Any]]:
        """Deployments to the environment, newest first, down to the first one older than `start`."""
        url: str | None = f"{self.api_url}/repos/{repo}/deployments"
        params: dict[str, str] | None = {"environment": self.environment, "per_page": str(self.per_page)}
        items: list[dict[str, Any]] = []
        pages = 0
        while url:
            if pages == self.max_pages:
                log.warning("github: stopped after %d pages of %s deployments", pages, repo)
                break
            pages += 1
            response = self._get(session, url, params)
            batch = json_body(response, "github")
            if not isinstance(batch, list):
                raise SourceUnavailable(
                    f"github: expected a list of deployments from {repo}, got {str(batch)[:200]}"
                )
            items.extend(batch)
            if not batch or _parse_time(batch[-1]["created_at"]) < start:
                break  # newest first: every further page is older still
            # The next link carries the query (environment, per_page, page).
            url, params = response.links.get("next", {}).get("url"), None
            if url and response.headers.get("X-RateLimit-Remaining") == "0":
                log.warning("github: rate limit budget spent, %s deployments listed partially", repo)
                break
        return items

    def _latest_status(self, session: requests.Session, repo: str, deployment_id: int) -> str | None:
        # Built from the configured API URL, not the `statuses_url` in the body, so the token
        # is only ever sent to the configured host.
        url = f"{self.api_url}/repos/{repo}/deployments/{deployment_id}/statuses"
        statuses = json_body(self._get(session, url, {"per_page": "1"}), "github")
        if isinstance(statuses, list) and statuses:
            return str(statuses[0].get("state") or "") or None
        return None

    def _deployment(self, service: str, item: dict[str, Any], status: str | None) -> Deployment:
        return Deployment(
            service=service,
            sha=str(item.get("sha") or ""),
            ref=str(item.get("ref") or ""),
            environment=str(item.get("environment") or self.environment),
            created_at=_parse_time(item["created_at"]),
            creator=str((item.get("creator") or {}).get("login") or ""),
            description=str(item.get("description") or ""),
            status=status,
        )
