"""The Ray launcher's checks, before any run folder is claimed: each problem is one line
(ConfigError, exit code 2), not a traceback after the folders are taken.

1. ``connect``: a TCP connection to ``--address`` first (Ray itself retries an unreachable
   address for a minute or more), then ``ray.init``; Ray refuses a driver whose Ray or Python
   version differs from the cluster's, which becomes one line here.
2. ``check_feasible``: a job's request (CPUs, GPUs, memory: ``job_request``) must fit on one
   node (Ray would otherwise wait for such a node without a word); ``capacity`` is how many
   fit at once, which is how many jobs the driver keeps on the cluster.
3. ``survey``: one small task per node reports its library versions (``ray_job.node_versions``),
   whether it sees the driver's output folder (a shared filesystem), whether it sees what
   ``source: runs`` jobs read, whether it reaches ``--storage``, and prepares every dataset of
   the suite on the node (its own copy where it does not see the driver's;
   ``ray_job.node_data``) after the driver has prepared them here.
"""

import os
import re
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from data import dataset_bytes
from experiments.core.config import ConfigError
from experiments.core.ray_job import data_fields, node_data, node_versions, version_mismatch
from experiments.core.run_files import marker, reaches
from experiments.core.trained import TrainedSource

CONNECT_SECONDS = 5  # a cluster that does not answer this soon is reported unreachable
SURVEY_SECONDS = 300  # a node's first task (worker start, code download, data) may be slow
PROCESS_BYTES = 800 * 2**20  # a job's process before data: Python, torch, the project (691 MB)


# ---------------------------------------------------------------- connecting

def connect(address, runtime_env):
    """``ray.init`` on ``address`` (None: RAY_ADDRESS, a cluster started on this machine, or a
    new local instance), Ray's logs kept from the driver's terminal; ConfigError when nothing
    answers there or its Ray or Python version is not the driver's."""
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "auto":
        check_reachable(address)
    try:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False,
                 logging_level="WARNING")
    except RuntimeError as e:
        if "Version mismatch" in str(e):
            raise ConfigError(version_line(address, str(e))) from None
        raise
    except ConnectionError as e:
        raise ConfigError(f"--address {address}: {str(e).strip().splitlines()[0]}") from None


def host_port(address):
    """('host', port) of 'host:port' or 'ray://host:port'."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]]+?)\]?:(\d+)", address.strip())
    if not match:
        raise ConfigError(f"--address {address}: expected HOST:PORT or ray://HOST:PORT")
    return match[1], int(match[2])


def check_reachable(address, timeout=CONNECT_SECONDS):
    """ConfigError unless something accepts a TCP connection at ``address``."""
    try:
        socket.create_connection(host_port(address), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"--address {address}: no Ray cluster answers there "
                          f"({e.strerror or e}); start one with `ray start --head` or check "
                          f"the address") from None


def version_line(address, message):
    """Ray's version-mismatch message in one line."""
    (ray_there, py_there), (ray_here, py_here) = re.findall(
        r"Ray: (\S+)\s+Python: (\S+)", message)[:2]
    return (f"--address {address}: the cluster runs Ray {ray_there} on Python {py_there}, this "
            f"driver Ray {ray_here} on Python {py_here}: run the driver with the cluster's "
            f"versions")


# ---------------------------------------------------------------- resources

def job_memory(config):
    """Bytes a job reserves: its process (PROCESS_BYTES) and its dataset in memory
    (data.dataset_bytes). An estimate, for scheduling: Ray does not cap a task's memory."""
    return PROCESS_BYTES + sum(dataset_bytes(data) for _, data in data_fields(config))


def job_request(config, cpus, gpus):
    """The resources one job asks Ray for."""
    return {"CPU": cpus, "GPU": gpus, "memory": job_memory(config)}


def fits(request, resources):
    """How many jobs of ``request`` fit at once in ``resources`` (one node's)."""
    return int(min(resources.get(name, 0) // amount
                   for name, amount in request.items() if amount))


def capacity(request, nodes):
    return sum(fits(request, node["Resources"]) for node in nodes)


def check_feasible(request, nodes):
    """ConfigError when no node of ``nodes`` (ray.nodes() entries) can run a job of
    ``request``: Ray would queue it for ever."""
    if capacity(request, nodes) == 0:
        raise ConfigError(f"a job needs {describe_request(request)} on one node, and no node "
                          f"has them ({describe(nodes)}): lower --cpus-per-job or "
                          f"--gpus-per-job, or add such a node")


def describe_request(request):
    gpus = f", {request['GPU']:g} GPU" if request.get("GPU") else ""
    return f"{request['CPU']:g} CPU{gpus} and {request['memory'] / 2**30:.1f} GiB of memory"


def describe(nodes):
    """'2 nodes, 4 CPUs, 1 GPU, 23.1 GiB of memory'."""
    total = {name: sum(node["Resources"].get(name, 0) for node in nodes)
             for name in ("CPU", "GPU", "memory")}
    return (f"{len(nodes)} node{'s' * (len(nodes) != 1)}, {total['CPU']:g} CPUs, "
            f"{total['GPU']:g} GPUs, {total['memory'] / 2**30:.1f} GiB of memory")


def alive_nodes():
    return [node for node in ray.nodes() if node["Alive"]]


# ---------------------------------------------------------------- what each node sees

@dataclass
class Survey:
    """What the nodes said: their hosts, and what some of them do not see."""
    hosts: list = field(default_factory=list)
    unshared: list = field(default_factory=list)  # hosts that do not see the output folder
    unseen: dict = field(default_factory=dict)  # input path -> hosts that do not see it
    unreached: list = field(default_factory=list)  # hosts that do not reach --storage


def inputs_of(configs, cwd):
    """The folders on the driver's disk that ``source: runs`` jobs read (absolute)."""
    return sorted({str(Path(cwd, c.runs)) for c in configs
                   if isinstance(c, TrainedSource) and c.source == "runs"})


def data_of(configs):
    """The distinct DataConfigs of ``configs``."""
    return list({repr(data): data for config in configs
                 for _, data in data_fields(config)}.values())


def survey(out_root, configs, cwd, driver_versions, storage):
    """Ask every node (one small task each) what it sees; ConfigError for a node whose
    versions differ from the driver's or that cannot prepare a dataset."""
    token = _write_token(out_root)
    try:
        with marker(storage) as reach:
            return _ask(alive_nodes(), (str(token), inputs_of(configs, cwd), data_of(configs),
                                        cwd, reach), driver_versions)
    finally:
        token.unlink(missing_ok=True)


def _ask(nodes, question, driver_versions):
    """``_look(*question)`` on each of ``nodes``, their answers summed up."""
    refs = [_look.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        node["NodeID"], soft=False)).remote(*question) for node in nodes]
    ready, late = ray.wait(refs, num_returns=len(refs), timeout=SURVEY_SECONDS)
    if late:
        raise ConfigError(f"{len(late)} of {len(refs)} nodes did not answer within "
                          f"{SURVEY_SECONDS} s (a node's first task starts a worker and "
                          f"downloads the code)")
    return _summed([_answer(ref) for ref in refs], driver_versions)


def _write_token(out_root):
    """A file in the nearest existing folder above the run folders, named uniquely: a node
    that can read it (and write beside it) shares the driver's output filesystem."""
    folder = Path(out_root).resolve()
    while not folder.is_dir():
        folder = folder.parent
    token = folder / f".ray-shared-{uuid.uuid4().hex}"
    token.write_text(token.name)
    return token


def _answer(ref):
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        raise ConfigError(str(e.cause if isinstance(e.cause, Exception) else e)) from None


def _summed(answers, driver_versions):
    survey = Survey()
    for answer in answers:
        problem = version_mismatch(driver_versions, answer["versions"], answer["host"])
        if problem:
            raise ConfigError(problem)
        survey.hosts.append(answer["host"])
        if not answer["shared"]:
            survey.unshared.append(answer["host"])
        for path in answer["unseen"]:
            survey.unseen.setdefault(path, []).append(answer["host"])
        if not answer["reached"]:
            survey.unreached.append(answer["host"])
    return survey


@ray.remote
def _look(token, inputs, datasets, cwd, reach):
    """On one node: its versions, whether it shares the driver's output folder, sees
    ``inputs`` and reaches the storage's file ``reach`` (None: no storage), after preparing
    each of ``datasets`` here (DataError: said in one line)."""
    for data in datasets:
        try:
            node_data(data, cwd)
        except Exception as e:
            raise ConfigError(f"node {socket.gethostname()}: {data.name} data: {e}") from None
    path = Path(token)
    shared = (path.is_file() and path.read_text() == path.name and os.access(path.parent, os.W_OK)
              and Path(cwd).is_dir())
    return {"host": socket.gethostname(), "versions": node_versions(), "shared": shared,
            "unseen": [p for p in inputs if not Path(p).is_dir()],
            "reached": reach is None or reaches(reach)}
