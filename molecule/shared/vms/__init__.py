"""vmctl: Debian 12 QEMU guests with emulated NUMA topologies, for Molecule.

Stdlib only (Python 3.11). Must run as root (debootstrap, chroot, mounts).
Molecule's create.yml / destroy.yml call ``vmctl.py`` (the command line beside
this package); all the logic lives in this package, one module per job (listed
in README.md beside it), so it can be tested without Ansible.

Subcommands
-----------
  image  [--cache DIR] [--prune|--print-hash] build the base image once (cached, locked)
  up     --name N --topology T --state-dir D boot one VM, wait for SSH, write D/N.json
  snapshot T...                              save a snapshot of each shape that has none
  down   --state-dir D [--name N] [--purge]  stop the VMs D says we started (by pidfile)
  list   --state-dir D                       the VMs in D, alive or not, with RSS
  inventory  --state-dir D [--group G]       Ansible inventory YAML for the VMs in D
  ssh-config --state-dir D                   an ssh_config(5) block per VM
  ssh    --state-dir D --name N -- CMD...    run a command in a VM
  check  --state-dir D --name N              compare the guest's NUMA view with its topology
  topology T                                 print the resolved topology and QEMU args

Image
-----
``debootstrap --variant=minbase`` of bookworm from the mirror the host's apt
uses, ``linux-image-cloud-amd64`` installed in a chroot, a baked ed25519 key
for root, systemd-networkd DHCP on the virtio NIC, timers/gettys/unused boot
units masked (the serial getty stays), CPU-feature modules blacklisted, the
host's extra CA certificates (``/usr/local/share/ca-certificates``) trusted
so HTTPS from the guest works wherever it works from the host, ``mkfs.ext4
-d`` into a sparse raw file. The initrd booted is vmctl's own (static busybox +
the virtio block modules, ~2 MiB, no udev); Debian's ``MODULES=list`` one is
kept as ``initrd-debian.img``. Stored in ``<cache>/<hash>/`` (default cache
``~/.cache/ktfleet/images``, env ``KTFLEET_IMAGE_CACHE``) as ``vmlinuz``,
``initrd.img``, ``initrd-debian.img``, ``rootfs.raw``, ``id_ed25519``
(+ ``.pub``) and ``manifest.json`` (recipe, mirror, kernel, package list,
timings). ``<hash>`` is a hash of the recipe (packages, kernel package, guest
config files, masks, init script, extra CAs, RECIPE_VERSION): change any and
a new image is built beside the old one (``image --prune`` removes the old).
``<cache>/<hash>.lock`` (flock) serialises builders: a second one waits, then
uses the first one's image.

VMs
---
Each VM is a qcow2 overlay on the base image, booted with ``-kernel/-initrd``,
TCG by default (``-accel tcg,thread=multi``); ``KTFLEET_ACCEL=kvm`` switches to
KVM (not detected automatically: /dev/kvm may exist and still not boot us).
SSH goes through slirp: ``127.0.0.1:<free port>`` -> guest port 22. The
state dir holds per VM ``N.json`` (state), ``N.qcow2`` (overlay), ``N.pid``,
``N.console.log`` (serial console; kept by ``down`` unless ``--purge``) and
``N.qemu.log`` (QEMU's own stderr), ``N.qmp`` (QMP socket).

Snapshots: the first VM booted for an image x topology x QEMU command line
(the per-VM parts left out: ``snapshot_key``) is saved once it has settled
(``systemctl is-system-running --wait``, ``sync``; QMP ``stop``, ``migrate`` to a
file, the overlay copied, ``cont``: ~5 s) into ``<image>/snapshots/<key>/``
(``disk.qcow2``, ``state``, ``meta.json``; ~130 MiB); every later ``up`` of that
shape restores it instead of booting (``-incoming``, an overlay on the saved
disk, QMP ``cont``, then the guest's clock and hostname set over SSH): 7 s and
6 s of host CPU against 41 s and 35 s for a ``single`` guest, on a loaded host.
A snapshot that fails to restore is removed and the VM booted (and saved
anew). Restored guests share the saver's machine id and kernel command line
(``/proc/cmdline`` names the saver's hostname). ``KTFLEET_VM_SNAPSHOTS=0``
always boots.

Topology JSON
-------------
::

    {
      "sockets": 2,             # -smp sockets
      "cores_per_socket": 2,    # -smp cores
      "threads_per_core": 2,    # -smp threads (SMT siblings)
      "nodes": [                # ids 0..n-1, each once
        {"id": 0, "socket": 0, "mem_mib": 384},
        {"id": 1, "socket": 1, "mem_mib": 384},
        {"id": 2, "cpus": false, "mem_mib": 256}     # CPU-less memory node
      ],
      "distances": [[10,21,30],[21,10,30],[30,30,10]] # optional SLIT, rows in id order
    }

* CPU numbering is QEMU's (and so Linux's): cpu = (socket*cores + core)*threads + thread.
* A CPU node has a ``socket``. When a socket has several CPU nodes (Sub-NUMA
  Clustering / NPS), its cores are split in contiguous equal slices in id
  order, or as given by ``"cores": [core ids within the socket]``. All threads
  of a core stay on one node. Every core of every socket must be on a node.
* ``"cpus": false`` makes a memory-only node (CXL-like): memory, no CPUs.
* ``distances`` defaults to 10 on the diagonal, 20 elsewhere; the diagonal
  must be 10.
* ``mem_mib`` >= 128 per node (Linux's x86 memory section); guest RAM is the sum.

``--topology`` takes inline JSON, a path to a JSON file, or a name from
``topologies.json`` beside vmctl.py.

Known guest quirk: a socket split over several nodes (snc4) makes Linux print
one "sched: CPU #1's llc-sibling CPU #0 is not on the same node" WARNING with a
backtrace at boot (real SNC CPUs are on a kernel allow-list). It is harmless.

Environment
-----------
  KTFLEET_IMAGE_CACHE    image cache dir (default ~/.cache/ktfleet/images)
  KTFLEET_ACCEL          tcg (default) or kvm
  KTFLEET_TCG_OPTS       -accel tcg,<opts> (default TCG_OPTS in qemu.py)
  KTFLEET_VM_TIMEOUT     host CPU seconds QEMU may use before SSH answers (default 180;
                         a healthy boot takes ~40), and at most 4x that on the clock
  KTFLEET_KERNEL_APPEND  extra kernel cmdline (default "loglevel=4": errors reach the console)
  KTFLEET_VM_BOOT_ATTEMPTS  boots tried before giving up (default 3; each waits the timeout)
  KTFLEET_INITRD         tiny (default) or debian
  KTFLEET_GUEST_HOST_CAS 0 to not copy the host's extra CA certificates
  KTFLEET_VM_SNAPSHOTS   0 to boot every VM instead of restoring a saved one
"""
