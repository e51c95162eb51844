@catalog @resources @serial
Feature: PostgreSQL out of disk space
  PostgreSQL's data directory lives on a filesystem of bounded size that the
  suite made for it (as root, with -D pg_disk_mb=256: a tmpfs of that size; on
  the Docker backend bound into PostgreSQL's container as its data volume), and
  the fault fills it. PostgreSQL refuses writes, and when a WAL write fails it
  PANICs and restarts, or cannot start until space is back; what it did is in
  the fault's evidence. The API must refuse with a fast 503 meanwhile, lose
  nothing it acknowledged, and serve again by itself once space is back.

  Scenario: With its database out of disk space the API answers 503 and serves again once space is back
    Given the stack is healthy
    And a steady load of 50 requests per second
    When postgres runs out of disk space for 4 seconds
    Then every failed request is answered with 503
    And the API recovers within 10 seconds
    And no acknowledged write is lost
