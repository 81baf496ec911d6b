"""Rooflines for SSM kernels: devices as data, one small pure model, measured points, projections, plots.

    >>> from ssmscope import roofline
    >>> dev = roofline.get_device("rtx4090")
    >>> p = roofline.place("causal_conv1d", {"batch": 1, "dim": 1536, "seqlen": 4096}, dev)
    >>> p.roofline.bound, p.roofline.floor_s            # ('dram', 2.498e-05): 25.2 MB at 1008 GB/s
    >>> roofline.roofline(flops=2e9, bytes=1e6, transcendentals=0, device="h100-sxm").bound   # 'compute'

Devices are YAML files under ``roofline/devices/`` (one per GPU, a source for every number); measured profiles
from ``ssmscope roofline calibrate`` load as ``<id>@measured``. See README.md for the model and its assumptions.
"""
from .core import Placement, Roofline, parse_shape, place, roofline
from .devices import Device, DeviceError, device_ids, get_device, get_devices, match_device
from .points import MeasuredPoint, Projection, Run, load_run, project

__all__ = ["Device", "DeviceError", "MeasuredPoint", "Placement", "Projection", "Roofline", "Run", "device_ids",
           "get_device", "get_devices", "load_run", "match_device", "parse_shape", "place", "project", "roofline"]
