// A project's usage over the last days: requests and tokens per day, stacked by deployment, as
// bar charts (SVG drawn here: no chart library, nothing inline the CSP would refuse), with the
// same numbers as a table for screen readers and for reading.
import { useState } from "preact/hooks";
import { call, type Deployment, seg } from "./api";
import { ErrorBox, usd, useLoad } from "./ui";

interface Bucket {
  date: string;
  deployment_id: string;
  requests?: string | number;
  prompt_tokens?: string | number;
  completion_tokens?: string | number;
  errors?: string | number;
  cost_usd?: string;
}

const COLORS = ["#2456d6", "#e07b00", "#1e7a34", "#b3261e", "#7b3fc4", "#00838f", "#8d6e63", "#5c6475"];
const n = (value: string | number | undefined) => Number(value ?? 0);

function days(count: number): string[] {
  const out: string[] = [];
  const today = new Date();
  for (let i = count - 1; i >= 0; i--) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    out.push(d.toISOString().slice(0, 10));
  }
  return out;
}

type Series = { name: string; values: number[] };

function BarChart(props: { title: string; dates: string[]; series: Series[]; format?: (v: number) => string }) {
  const { dates, series } = props;
  const format = props.format ?? ((v: number) => String(v));
  const width = 720;
  const height = 220;
  const pad = { left: 48, right: 8, top: 10, bottom: 28 };
  const totals = dates.map((_, i) => series.reduce((sum, s) => sum + s.values[i], 0));
  const max = Math.max(1, ...totals);
  const band = (width - pad.left - pad.right) / dates.length;
  const scale = (v: number) => ((height - pad.top - pad.bottom) * v) / max;
  const total = totals.reduce((a, b) => a + b, 0);
  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <svg
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-label={`${props.title}: ${format(total)} in ${dates.length} days`}
        data-testid={`chart-${props.title}`}
      >
        <line x1={pad.left} x2={width - pad.right} y1={height - pad.bottom} y2={height - pad.bottom} stroke="#d5d9e2" />
        <text x={pad.left - 6} y={pad.top + 8} text-anchor="end" font-size="11" fill="#5c6475">
          {format(max)}
        </text>
        <text x={pad.left - 6} y={height - pad.bottom} text-anchor="end" font-size="11" fill="#5c6475">
          0
        </text>
        {dates.map((date, i) => {
          let y = height - pad.bottom;
          const x = pad.left + i * band + band * 0.15;
          return (
            <g key={date}>
              {series.map((s, k) => {
                const h = scale(s.values[i]);
                y -= h;
                return h > 0 ? (
                  <rect key={s.name} x={x} y={y} width={band * 0.7} height={h} fill={COLORS[k % COLORS.length]}>
                    <title>
                      {date} {s.name}: {format(s.values[i])}
                    </title>
                  </rect>
                ) : null;
              })}
              {(i % Math.ceil(dates.length / 7) === 0 || i === dates.length - 1) && (
                <text x={x + band * 0.35} y={height - 10} text-anchor="middle" font-size="11" fill="#5c6475">
                  {date.slice(5)}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <ul class="legend">
        {series.map((s, k) => (
          <li key={s.name}>
            <svg width="12" height="12" aria-hidden="true">
              <rect width="12" height="12" fill={COLORS[k % COLORS.length]} />
            </svg>{" "}
            {s.name}
          </li>
        ))}
      </ul>
    </figure>
  );
}

export function Usage(props: { projectId: string }) {
  const [span, setSpan] = useState(14);
  const dates = days(span);
  const base = `/v1/projects/${seg(props.projectId)}`;
  const { value, error } = useLoad(
    () =>
      Promise.all([
        call<{ buckets?: Bucket[]; total_cost_usd?: string }>("GET", `${base}/usage?start_date=${dates[0]}&end_date=${dates[dates.length - 1]}`),
        call<{ deployments?: Deployment[] }>("GET", `${base}/deployments`),
      ]),
    [base, span],
  );
  const buckets = value?.[0].buckets ?? [];
  const names = new Map((value?.[1].deployments ?? []).map((d) => [d.id, d.name]));
  const ids = [...new Set(buckets.map((b) => b.deployment_id))];
  const seriesOf = (pick: (b: Bucket) => number): Series[] =>
    ids.map((id) => ({
      name: names.get(id) ?? (id || "(unknown)"),
      values: dates.map((date) => buckets.filter((b) => b.deployment_id === id && b.date === date).reduce((s, b) => s + pick(b), 0)),
    }));
  const requests = seriesOf((b) => n(b.requests));
  const tokens = seriesOf((b) => n(b.prompt_tokens) + n(b.completion_tokens));
  // Dollars summed in nano-dollars (the API's 9 decimals), so that the sums do not drift.
  const cost = seriesOf((b) => Math.round(Number(b.cost_usd ?? 0) * 1e9)).map((s) => ({
    ...s,
    values: s.values.map((v) => v / 1e9),
  }));
  return (
    <section aria-labelledby="usage-title">
      <h2 id="usage-title">Usage</h2>
      <label class="inline-label">
        Period
        <select value={span} onChange={(e) => setSpan(Number(e.currentTarget.value))}>
          <option value={7}>last 7 days</option>
          <option value={14}>last 14 days</option>
          <option value={30}>last 30 days</option>
        </select>
      </label>
      <ErrorBox error={error} />
      {value && buckets.length === 0 && <p>No usage in this period.</p>}
      {buckets.length > 0 && (
        <>
          <div class="charts">
            <BarChart title="Requests" dates={dates} series={requests} />
            <BarChart title="Tokens" dates={dates} series={tokens} />
            <BarChart title="Cost" dates={dates} series={cost} format={usd} />
          </div>
          <p data-testid="usage-total-cost">
            Cost in this period: <strong>{usd(value?.[0].total_cost_usd)}</strong> (each request at the price of its deployment
            when it was served)
          </p>
          <details>
            <summary>As a table</summary>
            <table data-testid="usage-table">
              <thead>
                <tr>
                  <th scope="col">Deployment</th>
                  <th scope="col">Requests</th>
                  <th scope="col">Prompt tokens</th>
                  <th scope="col">Completion tokens</th>
                  <th scope="col">Errors</th>
                  <th scope="col">Cost</th>
                </tr>
              </thead>
              <tbody>
                {ids.map((id) => {
                  const mine = buckets.filter((b) => b.deployment_id === id);
                  const sum = (pick: (b: Bucket) => number) => mine.reduce((s, b) => s + pick(b), 0);
                  return (
                    <tr key={id}>
                      <td>{names.get(id) ?? id}</td>
                      <td>{sum((b) => n(b.requests))}</td>
                      <td>{sum((b) => n(b.prompt_tokens))}</td>
                      <td>{sum((b) => n(b.completion_tokens))}</td>
                      <td>{sum((b) => n(b.errors))}</td>
                      <td>{usd(sum((b) => Math.round(Number(b.cost_usd ?? 0) * 1e9)) / 1e9)}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </details>
        </>
      )}
    </section>
  );
}
