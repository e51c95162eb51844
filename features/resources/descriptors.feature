@catalog @resources
Feature: A service out of file descriptors refuses with 503 and does not crash
  A process that cannot open another file cannot open a database connection
  or accept a client either. The API must answer what it can, refuse the rest
  with a fast 503, keep running, and serve again once descriptors are back.

  Scenario: With no descriptor to spare the API refuses with 503 and serves again afterwards
    Given the stack is healthy
    And a steady load of 20 requests per second
    When all database connections of the api are terminated
    And api cannot open more than 16 files for 3 seconds
    Then every failed request is answered with 503
    And the API recovers within 2 seconds
    And no acknowledged write is lost
