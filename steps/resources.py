"""Steps that starve a service of a resource: disk, CPU, memory, file descriptors."""

from behave import then, when

from support.checks.new_clients import check_new_clients_answered_503


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


@when("{service:Service} cannot open more than {files:Count} files for {seconds:Duration} while new clients connect")
def step_descriptors_limited_new_clients(context, service, files, seconds):
    """The same, and a new client connects every 0.25 s meanwhile (the load keeps its connections alive)."""
    context.chaos.hold(context.chaos.faults.descriptor_limit(service, files).with_new_clients(), seconds)


@then("every new client is served or answered with 503")
def step_new_clients_503(context):
    """Each new client of the descriptor limit above that ended while it held was served or got a 503 (no
    reset, no other 5xx, no wait past 2 s), and one at least got a 503."""
    check_new_clients_answered_503(entry.fault for entry in context.chaos.ledger.entries)


@when("{service:Service} runs out of disk space for {seconds:Duration}")
def step_out_of_disk(context, service, seconds):
    context.chaos.hold(context.chaos.faults.disk_full(service), seconds)
