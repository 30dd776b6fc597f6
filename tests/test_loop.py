"""The one loop over a whole run (Training.fit), the scheduler as an epoch loop steps it, the pipelines' one door,
and the changes a notebook parameter or a network's recipe names."""
import json
import re

import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler, Subset

from model import Net
from s5 import data, networks
from s5.budget import Budget
from s5.fast import FastPath
from s5.training import HISTORY, OriginalPipeline, Recipe, changed, pipeline

STEPS = 4  # batches an epoch in the door below


def door_of(mnist_train, mnist_test):
    """The fast path on the CPU: 256 training images in batches of 64, 100 test images."""
    return FastPath(Subset(mnist_train, range(256)), Subset(mnist_test, range(100)), "cpu", 64)


@pytest.fixture
def door(mnist_train, mnist_test):
    return door_of(mnist_train, mnist_test)


def fitted(door, recipe, epochs, seed=0):
    torch.manual_seed(seed)
    training = door.training(Net(), recipe, precision="fp32")
    training.fit(epochs)
    return training


@pytest.mark.quick
def test_fit_steps_a_steplr_once_an_epoch(door):
    training = fitted(door, Recipe(epochs=2), 2)
    assert training.scheduler.scheduler.last_epoch == 2, "StepLR's steps: one at each epoch's end"


@pytest.mark.quick
def test_fit_steps_a_onecycle_after_every_batch_and_not_again_at_the_epochs_end(door):
    training = fitted(door, Recipe(epochs=2, scheduler="onecycle", lr=0.05), 2)
    assert training.scheduler.scheduler.last_epoch == 2 * STEPS, "OneCycleLR's steps: one a batch, none an epoch"


@pytest.mark.quick
def test_fit_keeps_a_value_an_epoch_in_each_list_of_the_history(door):
    history = fitted(door, Recipe(epochs=2), 2).history
    assert {key: len(history[key]) for key in HISTORY} == {key: 2 for key in HISTORY}


@pytest.mark.quick
def test_fit_tells_report_each_epochs_test_accuracy(door):
    torch.manual_seed(0)
    training = door.training(Net(), Recipe(epochs=2), precision="fp32")
    told = []
    training.fit(2, lambda epoch, accuracy: told.append((epoch, accuracy)))
    assert told == list(enumerate(training.history["test_acc"], 1)), "each epoch, with the history's figure"


@pytest.mark.quick
def test_fit_called_again_goes_on_from_the_epochs_that_finished(mnist_train, mnist_test):
    """As a Ctrl-C leaves a run: one epoch, then fit to two, trains the numbers of two in one go."""
    whole = fitted(door_of(mnist_train, mnist_test), Recipe(epochs=2), 2).history
    torch.manual_seed(0)
    training = door_of(mnist_train, mnist_test).training(Net(), Recipe(epochs=2), precision="fp32")
    training.fit(1)
    training.fit(2)
    assert training.history["test_acc"] == whole["test_acc"], "the same two epochs"


@pytest.mark.quick
def test_the_original_pipelines_door_gives_the_originals_loaders(mnist_train, mnist_test):
    door = pipeline(mnist_train, mnist_test, "cpu", 512)
    assert isinstance(door, OriginalPipeline), f"the door unless fast is asked for: {type(door)}"
    loaders = (door.train_loader, door.test_loader)
    assert all(isinstance(loader, DataLoader) for loader in loaders), "torch's DataLoaders"
    assert [(loader.batch_size, loader.num_workers) for loader in loaders] == [(512, 2)] * 2, "batch 512, 2 workers"


def test_the_original_pipelines_loaders_shuffle_and_pin_no_memory_on_a_cpu(mnist_train, mnist_test):
    door = pipeline(mnist_train, mnist_test, "cpu", 512)
    loaders = (door.train_loader, door.test_loader)
    assert all(isinstance(loader.sampler, RandomSampler) for loader in loaders), "shuffled, as the original's"
    assert not any(loader.pin_memory for loader in loaders), "pinned memory is for copies to CUDA"


def original_door():
    """The original pipeline on the CPU, as door_of's fast path: 256 training images in batches of 64, 100 test."""
    train_data, test_data = (data.load_mnist(train=train, transform=data.test_transforms) for train in (True, False))
    return OriginalPipeline(Subset(train_data, range(256)), Subset(test_data, range(100)), "cpu", 64)


@pytest.mark.parametrize("recipe, steps", [(Recipe(epochs=1), 1), (Recipe(epochs=1, scheduler="onecycle", lr=0.05), STEPS)])
def test_the_original_pipelines_run_steps_its_scheduler_as_its_kind_needs(recipe, steps):
    """The same loop as the fast path's: StepLR once an epoch, OneCycleLR once a batch, each through the run's own
    optimizer."""
    training = original_door().training(Net(), recipe)
    training.fit(1)
    assert training.scheduler.scheduler.last_epoch == steps, f"{recipe.scheduler}: steps in one epoch of {STEPS} batches"
    assert training.scheduler.scheduler.optimizer is training.optimizer, "the scheduler moves another optimizer"


def test_the_original_pipelines_run_trains_the_network_it_is_given_with_the_recipe_given():
    door = original_door()
    model = Net()
    training = door.training(model, Recipe(epochs=1, scheduler="onecycle", lr=0.05))
    assert training.model is model, "not the network given"
    assert isinstance(training.scheduler.scheduler, torch.optim.lr_scheduler.OneCycleLR), "not the recipe given"
    before = model.conv1.weight.detach().clone()
    training.fit(1)
    assert len(training.history["test_acc"]) == 1, "one epoch trained and tested on the door's loaders"
    assert not torch.equal(model.conv1.weight, before), "the network given did not learn"


@pytest.mark.quick
def test_the_fast_paths_door_is_the_one_pipeline_opens_with_fast(mnist_train, mnist_test):
    door = pipeline(Subset(mnist_train, range(64)), Subset(mnist_test, range(100)), "cpu", 64, fast=True)
    assert isinstance(door, FastPath), type(door)
    assert (door.train_loader.batch_size, door.test_loader.batch_size) == (64, 64), "not the batch size given"
    assert len(door.test_loader.targets) == 100, "not the test data given"


@pytest.mark.quick
def test_changes_given_as_json_text_are_the_changes_given_as_a_dict():
    changes = {"epochs": 15, "scheduler": "onecycle"}
    assert changed(Recipe(), json.dumps(changes), "recipe") == changed(Recipe(), changes, "recipe") \
        == Recipe(epochs=15, scheduler="onecycle")


@pytest.mark.quick
@pytest.mark.parametrize("changes", ["epochs=15", "[15]", 15])
def test_changes_that_are_not_a_dict_are_refused_in_one_sentence(changes):
    with pytest.raises(ValueError, match=r"^The recipe's changes must be a dict of its fields, such as \{'epochs': 20\}, "
                                         rf"not {re.escape(repr(changes))}$"):
        changed(Recipe(), changes, "recipe")


@pytest.mark.quick
def test_a_change_to_a_field_the_budget_does_not_have_is_refused_naming_the_fields_it_has():
    with pytest.raises(ValueError, match=r"^The budget has no params: change parameters, epochs, target, last, seeds$"):
        changed(Budget(), {"params": 20000}, "budget")
    with pytest.raises(ValueError, match=r"^The budget has no params, seed: change parameters, epochs, target, last, "
                                         r"seeds$"):
        changed(Budget(), {"params": 20000, "seed": 1}, "budget")


@pytest.mark.quick
@pytest.mark.parametrize("network, suffix, name", [("model:Net", ".pt", "my_s5_net.pt"),
                                                   ("my_nets:Net6", ".pt", "my_nets.Net6.pt"),
                                                   ("small:SeparableNet", ".onnx", "small.SeparableNet.onnx")])
def test_a_file_written_for_a_network_is_named_after_it(network, suffix, name):
    assert networks.file_name(network, suffix) == name
