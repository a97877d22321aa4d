"""Maintenance: the duties one leader does for every worker of a schema.

- leadership: who leads: a lease row in the schema's `leader` table, renewed
  by its holder and taken over by another candidate once it has expired;
- rescuer: gives back the jobs of workers whose lease ran out, and frees the
  queues they held;
- pruner: deletes finished jobs past the retention, in batches;
- maintainer: runs the due duties while it leads, on a connection of its
  own. Every worker runs one as its maintenance part (unless --no-reaper),
  and `pgcc reaper` runs one alone.

Each duty has its own config; `MaintenanceConfig` gathers them.
"""
