"""`pgcc worker`: claims jobs, runs each in a child process, records the outcome.

The worker is a few small parts, each in its own module:

- supervisor: the main thread; decides the children's fate (timeouts, the
  lease's fence, shutdown), watches the other parts, handles signals; it
  never waits on the database or a child;
- exchange: the hot path, in its own thread: reads the children's answers,
  writes them (outcomes), claims, hands jobs out, LISTENs;
- pool: the child processes and the jobs each holds, never blocking; the one
  object both threads use, behind its own lock;
- lease: the thread that renews the worker's lease;
- maintenance: rescuing and pruning (pgcc._maintenance), when this worker
  leads;
- periodic: declaring the worker's periodic tasks and scheduling their ticks
  (every worker, leader or not: the database makes each tick one job);
- watch: the supervisor's judgement of the parts (restarted, or stuck);
- parts: the few objects these threads share;
- messages and framing: what the worker and its children say to each other;
- probe: finding the tasks without running their code in the worker;
- reload: `--reload`, watching the task folder and probing it again.
"""
