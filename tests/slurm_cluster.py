"""A throwaway single-node SLURM for the tests: munged, slurmctld and slurmd under one folder, the
node advertising two GPUs (gres.conf over symlinks to /dev/null and /dev/zero), no systemd,
stopped by the PIDs it started (slurm.conf(5), gres.conf(5))."""
import os
import os.path as osp
import shutil
import signal
import socket
import subprocess
import time

DAEMONS = ("munged", "slurmctld", "slurmd")
TOOLS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")


def _find(name):
    return shutil.which(name) or next((p for p in ("/usr/sbin/" + name, "/usr/bin/" + name) if osp.exists(p)), None)


def missing_tools():
    return [t for t in TOOLS if _find(t) is None]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, root, max_array_size=1001):
        self.root, self.max_array_size = str(root), max_array_size
        self.conf = osp.join(self.root, "slurm.conf")
        self.pids = {}
        self.jobcomp = osp.join(self.root, "jobcomp.txt")

    def env(self):
        return {"SLURM_CONF": self.conf}

    def _write_conf(self):
        r = self.root
        for d in ("state", "spool", "log", "run", "fakedev"):
            os.makedirs(osp.join(r, d), exist_ok=True)
        for i, dev in enumerate(("/dev/null", "/dev/zero")):
            link = osp.join(r, "fakedev", "nvidia{}".format(i))
            if not osp.lexists(link):
                os.symlink(dev, link)
        host = socket.gethostname().split(".")[0]
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (2 * 1024 * 1024)
        lines = [
            "ClusterName=ptnltest", "SlurmctldHost={}(127.0.0.1)".format(host),
            "SlurmctldPort={}".format(_free_port()), "SlurmdPort={}".format(_free_port()),
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge",
            "AuthInfo=socket={}".format(osp.join(r, "run", "munge.sock")),
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "SchedulerType=sched/backfill", "SchedulerParameters=bf_interval=1,sched_min_interval=0",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "GresTypes=gpu", "ReturnToService=2",
            "MpiDefault=none", "SwitchType=switch/none", "MaxArraySize={}".format(self.max_array_size),
            "StateSaveLocation={}".format(osp.join(r, "state")), "SlurmdSpoolDir={}".format(osp.join(r, "spool")),
            "SlurmctldPidFile={}".format(osp.join(r, "run", "slurmctld.pid")),
            "SlurmdPidFile={}".format(osp.join(r, "run", "slurmd.pid")),
            "SlurmctldLogFile={}".format(osp.join(r, "log", "slurmctld.log")),
            "SlurmdLogFile={}".format(osp.join(r, "log", "slurmd.log")),
            "JobCompType=jobcomp/filetxt", "JobCompLoc={}".format(self.jobcomp),
            "NodeName={} NodeAddr=127.0.0.1 CPUs={} RealMemory={} Gres=gpu:2 State=UNKNOWN".format(
                host, os.cpu_count(), mem),
            "PartitionName=test Nodes={} Default=YES MaxTime=INFINITE State=UP".format(host),
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(osp.join(r, "gres.conf"), "w") as f:
            f.write("Name=gpu File={}\n".format(osp.join(r, "fakedev", "nvidia[0-1]")))

    def _daemon(self, name, argv, pidfile):
        env = dict(os.environ, **self.env())
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=60)
        for _ in range(100):
            if osp.isfile(pidfile) and open(pidfile).read().strip():
                self.pids[name] = int(open(pidfile).read().strip())
                return
            time.sleep(0.1)
        raise RuntimeError("{} wrote no pid file {}".format(name, pidfile))

    def start(self):
        self._write_conf()
        r = self.root
        key = osp.join(r, "munge.key")
        subprocess.run([_find("mungekey"), "--create", "--keyfile=" + key], check=True, capture_output=True)
        os.chmod(key, 0o600)
        self._daemon("munged", [_find("munged"), "--force", "--key-file=" + key,
                                "--socket=" + osp.join(r, "run", "munge.sock"),
                                "--pid-file=" + osp.join(r, "run", "munged.pid"),
                                "--log-file=" + osp.join(r, "log", "munged.log"),
                                "--seed-file=" + osp.join(r, "run", "munge.seed")], osp.join(r, "run", "munged.pid"))
        self._daemon("slurmctld", [_find("slurmctld"), "-c"], osp.join(r, "run", "slurmctld.pid"))
        self._daemon("slurmd", [_find("slurmd")], osp.join(r, "run", "slurmd.pid"))
        env = dict(os.environ, **self.env())
        for _ in range(300):
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
            if out.strip().startswith("idle"):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("the test SLURM node did not become idle (sinfo: {!r}); logs in {}".format(
            out, osp.join(r, "log")))

    def stop(self):
        for name in reversed(DAEMONS):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def run(self, *argv):
        return subprocess.run(list(argv), env=dict(os.environ, **self.env()), capture_output=True, text=True,
                              timeout=120)

    def wait_idle(self, timeout=900):
        """Until squeue lists no job; False on timeout."""
        end = time.time() + timeout
        while time.time() < end:
            if not self.run("squeue", "-h").stdout.strip():
                return True
            time.sleep(1)
        return False
