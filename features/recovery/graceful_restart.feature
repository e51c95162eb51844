Feature: A deploy restarts the API gracefully
  A deploy stops each process with SIGTERM and starts the new one. The requests the old process has
  accepted must be finished before it exits; what fails may fail only while nothing listens.

  @catalog @recovery
  Scenario: A graceful restart finishes the requests in flight
    Given the stack is healthy
    And every statement of the api is slowed by 0.3 seconds
    And a steady load of 10 requests per second
    When api is restarted gracefully
    Then no in-flight request is dropped
    And no acknowledged write is lost
