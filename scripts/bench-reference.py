"""Reference runs for `campusgrid bench`: the function-task workload on Dask distributed and on Ray.

Same function, same interpreter, same concurrency as the grid's peers: 2 worker processes with 1 thread each
(Dask LocalCluster) or ray.init(num_cpus=2). Pools are started and warmed before timing, as the peers' are.
Prints one JSON object on stdout. Usage: bench-reference.py dask|ray TASKS ROUND_TRIPS REPEATS
"""
import json
import platform
import sys
import time

PROGRAM = "def main(x):\n    return x * x\n"
namespace = {}
exec(PROGRAM, namespace)
main = namespace["main"]


def measure(submit_many, round_trip, tasks, round_trips, repeats):
    submit_many(min(200, tasks))  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        results = submit_many(tasks)
        elapsed = time.perf_counter() - start
        if results != [x * x for x in range(tasks)]:
            raise RuntimeError("wrong results")
        rates.append(tasks / elapsed)
    latencies = []
    for i in range(round_trips):
        start = time.perf_counter()
        if round_trip(i) != i * i:
            raise RuntimeError("wrong result")
        latencies.append((time.perf_counter() - start) * 1000)
    return {"tasks": tasks, "round_trips": round_trips, "tasks_per_s": rates, "round_trip_ms": latencies}


def run_dask(tasks, round_trips, repeats):
    import dask
    import distributed
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        out = measure(
            lambda n: client.gather(client.map(main, range(n), pure=False)),
            lambda i: client.submit(main, i, pure=False).result(),
            tasks, round_trips, repeats)
    out["name"] = f"dask distributed {distributed.__version__} (LocalCluster, 2 processes × 1 thread)"
    out["version"] = dask.__version__
    return out


def run_ray(tasks, round_trips, repeats):
    import logging
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             object_store_memory=256 * 1024 * 1024)
    try:
        remote = ray.remote(main)
        out = measure(
            lambda n: ray.get([remote.remote(i) for i in range(n)]),
            lambda i: ray.get(remote.remote(i)),
            tasks, round_trips, repeats)
    finally:
        ray.shutdown()
    out["name"] = f"ray {ray.__version__} (ray.init(num_cpus=2))"
    out["version"] = ray.__version__
    return out


if __name__ == "__main__":
    which, tasks, round_trips, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    result = {"dask": run_dask, "ray": run_ray}[which](tasks, round_trips, repeats)
    result["python"] = platform.python_version()
    print(json.dumps(result))
