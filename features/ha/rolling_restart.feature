@ha @serial
Feature: A deploy restarts the API replicas behind the balancer one at a time
  A deploy stops each replica with SIGTERM, waits for it to exit, starts the new one and waits until the
  balancer sends it requests again before it moves on to the next. With another replica in rotation all
  along, clients should not notice: the requests a replica has accepted are finished before it exits,
  and the balancer sends the new ones to the replica that runs.
  Run with: behave -D stack_file=stack/ha/stack.toml --tags=@ha

  @rolling
  Scenario: A rolling restart of the API replicas drops no request
    Given the stack is healthy
    And every statement of the api is slowed by 0.3 seconds
    And a steady load of 10 requests per second
    When the api replicas are restarted gracefully one at a time
    Then no in-flight request is dropped
    And the error rate stays below 5%
    And no acknowledged write is lost
