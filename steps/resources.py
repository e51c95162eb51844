"""Steps that starve a service of a resource: disk, CPU, memory, file descriptors."""

from behave import when


@when("the {service:Service} CPU is limited to {percent:Number}% for {seconds:Duration}")
def step_cpu_limited(context, service, percent, seconds):
    context.chaos.hold(context.chaos.faults.cpu_limit(service, percent), seconds)


@when("a CPU hog runs beside {service:Service} for {seconds:Duration}")
def step_cpu_hog(context, service, seconds):
    context.chaos.hold(context.chaos.faults.cpu_hog(service), seconds)


@when("the {service:Service} memory is limited to {megabytes:Number} MB for {seconds:Duration}")
def step_memory_limited_for(context, service, megabytes, seconds):
    context.chaos.hold(context.chaos.faults.memory_limit(service, megabytes), seconds)


@when("the {service:Service} memory is limited to {megabytes:Number} MB")
def step_memory_limited(context, service, megabytes):
    context.chaos.inject(context.chaos.faults.memory_limit(service, megabytes))  # healed at the scenario's end


@when("the {service:Service} memory limit is removed")
def step_memory_limit_removed(context, service):
    context.chaos.remove_limits(service)


@when("{service:Service} cannot open more than {files:Count} files for {seconds:Duration}")
def step_descriptors_limited(context, service, files, seconds):
    context.chaos.hold(context.chaos.faults.descriptor_limit(service, files), seconds)


@when("{service:Service} runs out of disk space for {seconds:Duration}")
def step_out_of_disk(context, service, seconds):
    context.chaos.hold(context.chaos.faults.disk_full(service), seconds)
