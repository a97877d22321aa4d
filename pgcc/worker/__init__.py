"""`pgcc worker`: claims jobs, runs each in a child process, records the outcome.

The worker is a few small parts, each in its own module:

- supervisor: the main thread; owns the children (pool), watches the other
  parts, handles signals;
- pool: the child processes and the jobs each holds, never blocking;
- exchange: the thread that talks to the database: outcomes (outcomes),
  claims and LISTEN;
- lease: the thread that renews the worker's lease;
- maintenance: reaping and pruning, when this worker leads;
- parts: the few objects these threads share;
- messages and framing: what the worker and its children say to each other;
- probe: finding the tasks without running their code in the worker.
"""
