@catalog @resources @serial
Feature: A service starved of CPU answers within its bounds and recovers at once
  A container's CPU quota, or a noisy neighbour busy on every CPU, leaves the
  service a fraction of the time it had. A service sized for its quota keeps
  answering a light load within its deadline; whatever it cannot serve it
  refuses with a fast 503; it loses nothing it acknowledged, and it is itself
  again as soon as the CPU is back.

  Scenario: Under a CPU quota of a tenth of one CPU the API answers a light load within its deadline
    Given the stack is healthy
    And a steady load of 20 requests per second
    When the api CPU is limited to 10% for 6 seconds
    Then no request takes longer than 4 seconds
    And every failed request is answered with 503
    And the API recovers within 2 seconds
    And no acknowledged write is lost

  Scenario: Beside a CPU hog the API answers a light load within a second and recovers at once
    Given the stack is healthy
    And a steady load of 20 requests per second
    When a CPU hog runs beside api for 5 seconds
    Then the API answers within 1 second while the fault lasts
    And every failed request is answered with 503
    And the API recovers within 2 seconds
    And no acknowledged write is lost
