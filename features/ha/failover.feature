@ha @serial
Feature: A replicated database fails over, and the API behind its balancer follows
  Three PostgreSQL servers under Patroni (one primary, two streaming replicas, synchronous
  replication), etcd for the leader election, HAProxy routing to the primary, and two API
  replicas behind a second balancer. Run with: behave -D stack_file=stack/ha/stack.toml --tags=@ha

  @failover
  Scenario: The primary is killed under heavy load and no acknowledged write is lost
    Given the stack is healthy
    And heavy load
    When the primary is killed
    Then a new primary is elected within 15 seconds
    And the API recovers within 40 seconds
    And no acknowledged write is lost
    And at most one node accepts writes at any time
    And the old primary rejoins as a replica within 40 seconds

  @balancer
  Scenario: One API replica dies behind the balancer and clients barely notice
    Given the stack is healthy
    And steady load
    When one api replica is killed
    Then no request fails later than 2 seconds after the replica died
    And no acknowledged write is lost

  @switchover
  Scenario: A switchover moves the primary without two writers at once
    Given the stack is healthy
    And steady load
    When a switchover to a replica happens
    Then a new primary is elected within 10 seconds
    And the API recovers within 30 seconds
    And no acknowledged write is lost
    And at most one node accepts writes at any time
    And the cluster has 2 healthy replicas within 30 seconds

  @behind
  Scenario: The primary dies with its replicas behind and synchronous replication loses nothing
    Given the stack is healthy
    And steady load
    When the primary is killed while its replicas are 3 seconds behind
    Then a new primary is elected within 20 seconds
    And the API recovers within 30 seconds
    And no acknowledged write is lost
    And at most one node accepts writes at any time

  @etcd
  Scenario: etcd loses its quorum: the primary steps down and the API answers 503, not stale success
    Given the stack is healthy
    And steady load
    When etcd loses its quorum for 20 seconds
    Then the primary had stepped down within 15 seconds of the fault
    And every failed request is answered with 503
    And the API recovers within 30 seconds
    And no acknowledged write is lost
    And at most one node accepts writes at any time
