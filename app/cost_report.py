"""`budrt cost`: spend per day, per deployment and per project, cost per million tokens (and, for
image deployments, images generated and cost per image), and the projection against a budget, as
a table or JSON.

It reads the platform over its management REST API as a platform admin, as `budrt bench` does (a
token: `--token` or BUDRT_ADMIN_TOKEN, else a login as `--username` with BUD_ADMIN_PASSWORD):
ListProjects, ListDeployments (names), QueryUsage (costs, computed by the app at each request's
price) and ListBudgets (limits and this period's spend). Money is `decimal.Decimal` from the
API's decimal strings, never floats.

The projection: the window's average daily spend times the days of the current month (UTC), the
spend a month at this rate would reach, against `--budget` (US dollars a month) or, without it,
each project's monthly budgets (a daily budget counts as its limit times the month's days).
"""

from __future__ import annotations

import calendar
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson

from budrt.admin_api import AdminApi, AdminApiError, NoCredentials
from budrt.money import MoneyError, parse_micros

_MILLION = Decimal(1_000_000)
_MICRO = Decimal("0.000001")


class CostError(Exception):
    """What stops the report (a refused login, an unreachable gateway, a bad option)."""


@dataclass
class Totals:
    """Requests, tokens, images and cost of a group of usage buckets."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    cost: Decimal = field(default_factory=Decimal)

    def add(self, bucket: dict[str, Any]) -> None:
        """Adds one QueryUsage bucket (REST JSON: int64 as strings; `images` only where the
        bucket counts image calls)."""
        self.requests += int(bucket.get("requests", 0))
        self.prompt_tokens += int(bucket.get("prompt_tokens", 0))
        self.completion_tokens += int(bucket.get("completion_tokens", 0))
        self.images += int(bucket.get("images", 0))
        self.cost += Decimal(bucket.get("cost_usd") or "0")

    @property
    def per_image(self) -> Decimal | None:
        """Cost per generated image (None without images). A group that mixes image and token
        calls divides all of its cost: per deployment, it is the image deployment's price."""
        return (self.cost / self.images).quantize(_MICRO) if self.images else None

    @property
    def per_million(self) -> Decimal | None:
        """Cost per million tokens (None without tokens)."""
        tokens = self.prompt_tokens + self.completion_tokens
        return (self.cost * _MILLION / tokens).quantize(_MICRO) if tokens else None

    def as_json(self) -> dict[str, Any]:
        """The totals as JSON (money as decimal strings)."""
        per_million, per_image = self.per_million, self.per_image
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "images": self.images,
            "cost_usd": str(self.cost),
            "cost_per_million_tokens_usd": None if per_million is None else str(per_million),
            "cost_per_image_usd": None if per_image is None else str(per_image),
        }


def build_report(
    days: int,
    today: date,
    projects: list[dict[str, Any]],
    deployments: dict[str, str],
    usage: dict[str, list[dict[str, Any]]],
    budgets: dict[str, list[dict[str, Any]]],
    budget: Decimal | None = None,
    detailed: bool = False,
) -> dict[str, Any]:
    """The report as JSON-ready data. `deployments`: names by id; `usage`, `budgets`: each
    project's QueryUsage buckets and ListBudgets budgets, by project id; `budget`: US dollars a
    month to project against (else the projects' own budgets)."""
    start = today - timedelta(days=days - 1)
    month_days = calendar.monthrange(today.year, today.month)[1]
    names = {p["id"]: p.get("name", p["id"]) for p in projects}
    total = Totals()
    by_day: dict[str, Totals] = defaultdict(Totals)
    by_deployment: dict[tuple[str, str], Totals] = defaultdict(Totals)
    by_project: dict[str, Totals] = defaultdict(Totals)
    rows: list[dict[str, Any]] = []
    for project_id, buckets in usage.items():
        for bucket in buckets:
            dep = bucket.get("deployment_id", "")
            for group in (
                total,
                by_day[bucket["date"]],
                by_deployment[(project_id, dep)],
                by_project[project_id],
            ):
                group.add(bucket)
            if detailed:
                rows.append(
                    {
                        "date": bucket["date"],
                        "project": names.get(project_id, project_id),
                        "deployment": deployments.get(dep, dep),
                        "api_key_id": bucket.get("api_key_id", ""),
                        "cost_usd": str(Decimal(bucket.get("cost_usd") or "0")),
                        "requests": int(bucket.get("requests", 0)),
                    }
                )
    daily_average = total.cost / days
    projected = (daily_average * month_days).quantize(_MICRO)
    project_rows = []
    for project_id, totals in sorted(by_project.items(), key=lambda kv: -kv[1].cost):
        monthly = _monthly_limit(budgets.get(project_id, []), month_days)
        project_projection = (totals.cost / days * month_days).quantize(_MICRO)
        project_rows.append(
            {
                "project_id": project_id,
                "project": names.get(project_id, project_id),
                **totals.as_json(),
                "projected_month_usd": str(project_projection),
                "monthly_budget_usd": None if monthly is None else str(monthly),
                "budget_used_percent": _percent(project_projection, monthly),
                "budgets": [
                    {
                        "id": b["id"],
                        "api_key_id": b.get("api_key_id", ""),
                        "period": b.get("period", "BUDGET_PERIOD_MONTHLY"),
                        "limit_usd": b.get("limit_usd", "0"),
                        "spent_usd": b.get("spent_usd", "0"),
                        "hard_stop": bool(b.get("hard_stop", False)),
                    }
                    for b in budgets.get(project_id, [])
                ],
            }
        )
    if budget is None:
        limits = [_monthly_limit(budgets.get(pid, []), month_days) for pid in by_project]
        known = [m for m in limits if m is not None]
        budget = sum(known, Decimal(0)) if known else None
    report: dict[str, Any] = {
        "window": {"days": days, "start": start.isoformat(), "end": today.isoformat()},
        "total": total.as_json(),
        "by_day": [
            {
                "date": (start + timedelta(days=i)).isoformat(),
                **by_day[(start + timedelta(days=i)).isoformat()].as_json(),
            }
            for i in range(days)
        ],
        "by_deployment": [
            {
                "project": names.get(pid, pid),
                "deployment_id": dep,
                "deployment": deployments.get(dep, dep or "-"),
                **totals.as_json(),
            }
            for (pid, dep), totals in sorted(by_deployment.items(), key=lambda kv: -kv[1].cost)
        ],
        "by_project": project_rows,
        "projection": {
            "daily_average_usd": str(daily_average.quantize(_MICRO)),
            "days_in_month": month_days,
            "projected_month_usd": str(projected),
            "budget_usd": None if budget is None else str(budget),
            "budget_used_percent": _percent(projected, budget),
            "over_budget": budget is not None and projected > budget,
        },
    }
    if detailed:
        report["detailed"] = sorted(
            rows, key=lambda r: (r["date"], r["project"], r["deployment"], r["api_key_id"])
        )
    return report


def _monthly_limit(budgets: list[dict[str, Any]], month_days: int) -> Decimal | None:
    """A project's project-wide budgets as a monthly amount (the tightest; a daily one times the
    month's days); None without any."""
    limits = []
    for b in budgets:
        if b.get("api_key_id"):
            continue
        limit = Decimal(b.get("limit_usd") or "0")
        limits.append(limit * month_days if b.get("period") == "BUDGET_PERIOD_DAILY" else limit)
    return min(limits) if limits else None


def _percent(value: Decimal, of: Decimal | None) -> str | None:
    return None if not of else str((value * 100 / of).quantize(Decimal("0.1")))


def _usd(value: str | None) -> str:
    return "-" if value is None else f"${Decimal(value):,.6f}".rstrip("0").rstrip(".")


def render(report: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    out: list[str] = []
    window = report["window"]
    out.append(
        f"Spend {window['start']} .. {window['end']} (UTC, {window['days']} days): {_usd(report['total']['cost_usd'])}"
    )
    out.append("")
    out.append(
        _table(
            ["date", "requests", "tokens", "images", "cost", "per 1M tokens"],
            [
                [
                    d["date"],
                    str(d["requests"]),
                    str(d["prompt_tokens"] + d["completion_tokens"]),
                    str(d["images"]),
                    _usd(d["cost_usd"]),
                    _usd(d["cost_per_million_tokens_usd"]),
                ]
                for d in report["by_day"]
            ],
        )
    )
    out.append("")
    out.append(
        _table(
            [
                "project",
                "deployment",
                "requests",
                "input tok",
                "output tok",
                "images",
                "cost",
                "per 1M tokens",
                "per image",
            ],
            [
                [
                    d["project"],
                    d["deployment"],
                    str(d["requests"]),
                    str(d["prompt_tokens"]),
                    str(d["completion_tokens"]),
                    str(d["images"]),
                    _usd(d["cost_usd"]),
                    _usd(d["cost_per_million_tokens_usd"]),
                    _usd(d["cost_per_image_usd"]),
                ]
                for d in report["by_deployment"]
            ],
        )
    )
    out.append("")
    out.append(
        _table(
            ["project", "requests", "cost", "per 1M tokens", "projected month", "monthly budget", "used"],
            [
                [
                    p["project"],
                    str(p["requests"]),
                    _usd(p["cost_usd"]),
                    _usd(p["cost_per_million_tokens_usd"]),
                    _usd(p["projected_month_usd"]),
                    _usd(p["monthly_budget_usd"]),
                    "-" if p["budget_used_percent"] is None else f"{p['budget_used_percent']}%",
                ]
                for p in report["by_project"]
            ],
        )
    )
    projection = report["projection"]
    out.append("")
    line = (
        f"Projection: {_usd(projection['daily_average_usd'])}/day x {projection['days_in_month']} days = "
        f"{_usd(projection['projected_month_usd'])} this month"
    )
    if projection["budget_usd"] is not None:
        verdict = "OVER" if projection["over_budget"] else "within"
        line += f", {projection['budget_used_percent']}% of the {_usd(projection['budget_usd'])} budget ({verdict})"
    out.append(line)
    if "detailed" in report:
        out.append("")
        out.append(
            _table(
                ["date", "project", "deployment", "api key", "requests", "cost"],
                [
                    [
                        r["date"],
                        r["project"],
                        r["deployment"],
                        r["api_key_id"] or "-",
                        str(r["requests"]),
                        _usd(r["cost_usd"]),
                    ]
                    for r in report["detailed"]
                ],
            )
        )
    return "\n".join(out) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        rows = [["(none)"] + [""] * (len(header) - 1)]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


async def gather(
    api: AdminApi, days: int, today: date, project: str = ""
) -> tuple[
    list[dict[str, Any]], dict[str, str], dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]
]:
    """Projects (all, or the one named by id or name), deployment names, usage and budgets."""
    projects = await api.pages("/v1/projects", "projects")
    if project:
        projects = [p for p in projects if project in (p["id"], p.get("name"))]
        if not projects:
            raise CostError(f"no project {project!r}")
    start = (today - timedelta(days=days - 1)).isoformat()
    deployments: dict[str, str] = {}
    usage: dict[str, list[dict[str, Any]]] = {}
    budgets: dict[str, list[dict[str, Any]]] = {}
    for p in projects:
        pid = p["id"]
        for d in await api.pages(f"/v1/projects/{pid}/deployments", "deployments"):
            deployments[d["id"]] = d["name"]
        answer = await api.get(f"/v1/projects/{pid}/usage", start_date=start, end_date=today.isoformat())
        usage[pid] = answer.get("buckets", [])
        budgets[pid] = (await api.get(f"/v1/projects/{pid}/budgets")).get("budgets", [])
    return projects, deployments, usage, budgets


async def run(args: Any, out: Any = sys.stdout, client: httpx.AsyncClient | None = None) -> int:
    """`budrt cost`: prints the report; 1 with the reason on stderr when it cannot."""
    budget: Decimal | None = None
    if args.budget:
        try:
            budget = Decimal(parse_micros(args.budget)) / 1_000_000
        except MoneyError as err:
            raise CostError(f"--budget: {err}") from None
    today = datetime.now(UTC).date()
    own = client is None
    client = client or httpx.AsyncClient(base_url=args.url or _default_url(), timeout=60)
    try:
        api = await AdminApi.login(
            client,
            args.token or os.environ.get("BUDRT_ADMIN_TOKEN", ""),
            args.username,
            os.environ.get("BUD_ADMIN_PASSWORD", ""),
        )
        data = await gather(api, args.days, today, args.project)
    except NoCredentials:
        raise CostError(
            "an admin token is needed: --token (or BUDRT_ADMIN_TOKEN), or BUD_ADMIN_PASSWORD for --username"
        ) from None
    except AdminApiError as err:
        # Its own text ("GET /v1/projects: <the answer's message>") is this command's wording.
        raise CostError(str(err)) from None
    except httpx.HTTPError as err:
        raise CostError(f"the gateway is unreachable: {err}") from None
    finally:
        if own:
            await client.aclose()
    report = build_report(args.days, today, *data, budget=budget, detailed=args.detailed)
    if args.json:
        out.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(render(report))
    return 0


def _default_url() -> str:
    """This machine's gateway: its HTTP port from the gateway component's settings (found through
    the installed components, never imported), else 8000."""
    from budrt.components import discover
    from budrt.settings import load

    gateway = discover().get("gateway")
    port = getattr(load(gateway.settings), "gateway_http_port", 8000) if gateway is not None else 8000
    return f"http://127.0.0.1:{port}"
