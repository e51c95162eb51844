@catalog @resources @serial
Feature: A service under a memory limit
  A container's memory limit: a service that keeps its memory bounded serves on
  under a limit with headroom; one restarted under a limit it cannot start in is
  killed by the kernel's OOM killer, again and again, until the limit goes, and
  its restart policy then brings it back with nothing acknowledged lost.

  Scenario: Under a memory limit with headroom the API serves a steady load
    Given the stack is healthy
    And a steady load of 50 requests per second
    When the api memory is limited to 200 MB for 3 seconds
    Then the error rate stays below 1%
    And no acknowledged write is lost

  Scenario: Under a memory limit it cannot start in, the API is OOM-killed until the limit goes
    Given the stack is healthy
    And a steady load of 20 requests per second
    When the api memory is limited to 20 MB
    And the load runs for 3 seconds
    And the api memory limit is removed
    Then the API recovers within 10 seconds
    And no acknowledged write is lost
