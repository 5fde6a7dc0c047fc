"""The slot resources `hosts join` gives a node and the ray executor pins jobs to."""

from orchestrator.executors.base import Slot
from orchestrator.executors.ray_cluster import resource_of, slot_of
from orchestrator.ray_resources import parse_slot_resource, slot_resource, slot_resources


def test_a_node_gets_one_resource_per_slot_and_one_for_the_host():
    assert slot_resources("r1", ["0", "1"]) == {"host:r1": 2.0, "slot:r1:0": 1.0,
                                                "slot:r1:1": 1.0}
    assert slot_resources("r1", []) == {"host:r1": 1.0, "slot:r1:cpu": 1.0}


def test_names_round_trip_through_slots():
    assert parse_slot_resource(slot_resource("a.b-1", "3")) == ("a.b-1", "3")
    slot = slot_of("slot:r1:cpu")
    assert slot == Slot("r1/cpu", "r1", "cpu", "")
    assert resource_of(slot) == "slot:r1:cpu"
    assert resource_of(slot_of("slot:r1:2")) == "slot:r1:2"
