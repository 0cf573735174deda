#!/usr/bin/env bash
# Remove Dagster run and step containers that stopped more than RETENTION_DAYS (7) ago, so
# `docker logs <container>` on a role host answers for a week after a run and no longer.
# Installed by setup-role-host.sh as /usr/local/sbin/unde-prune-run-containers, run hourly
# by unde-prune-run-containers.timer.
#   usage: prune-run-containers.sh [--days N] [--dry-run] [--label KEY[=VALUE] ...]
# Only containers the launcher made are touched: labels `unde` and `dagster/run_id` (run
# workers and the step containers of runs spanning roles both carry them), status exited,
# dead or created (never started). Age is from when the container stopped (created, if it
# never ran); running containers are never touched. --label narrows further (ANDed).
set -euo pipefail
days=${RETENTION_DAYS:-7}
dry_run=0
filters=(--filter label=unde --filter label=dagster/run_id)
while [ $# -gt 0 ]; do
  case $1 in
    --days) days=${2:?--days needs a number}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --label) filters+=(--filter "label=${2:?--label needs KEY[=VALUE]}"); shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "prune-run-containers: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $days =~ ^[0-9]+$ ]] || { echo "prune-run-containers: --days must be whole days" >&2; exit 2; }
cutoff=$(( $(date +%s) - days * 86400 ))

# Several status filters are ORed, label filters ANDed.
mapfile -t ids < <(docker ps -aq --no-trunc "${filters[@]}" \
  --filter status=exited --filter status=dead --filter status=created)
removed=0 kept=0
for id in "${ids[@]}"; do
  [ -n "$id" ] || continue
  # State.FinishedAt is 0001-01-01 for a container that never ran: use its creation time.
  read -r status finished created name < <(docker inspect --format \
    '{{.State.Status}} {{.State.FinishedAt}} {{.Created}} {{.Name}}' "$id" 2>/dev/null) \
    || continue  # removed meanwhile
  case $status in exited|dead|created) ;; *) continue ;; esac
  stopped=$(date -d "$finished" +%s 2>/dev/null || echo 0)
  [ "$stopped" -gt 0 ] || stopped=$(date -d "$created" +%s)
  if [ "$stopped" -ge "$cutoff" ]; then
    kept=$((kept + 1))
    continue
  fi
  if [ "$dry_run" -eq 1 ]; then
    echo "would remove ${name#/} ($id, $status since $finished)"
  else
    docker rm -v "$id" >/dev/null && echo "removed ${name#/} ($status since $finished)"
  fi
  removed=$((removed + 1))
done
verb=$([ "$dry_run" -eq 1 ] && echo "would remove" || echo "removed")
echo "prune-run-containers: $verb $removed, kept $kept stopped within $days days"
