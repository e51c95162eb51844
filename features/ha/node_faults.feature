@ha @serial
Feature: A node of the replicated database stops, freezes, dies or falls behind, and the API carries on
  The other ways a database node fails besides a crash of its primary: a planned stop (Patroni hands
  its leader key over), a freeze longer than the leader key lives (a stalled VM, a long GC pause, a
  stuck disk), the death of a replica, and replicas that stop applying what they receive.
  Run with: behave -D stack_file=stack/ha/stack.toml --tags=@ha

  @stopped
  Scenario: The primary is stopped for maintenance and a replica takes over without losing a write
    Given the stack is healthy
    And steady load
    When the primary is stopped
    Then a new primary is elected within 10 seconds
    And the API recovers within 30 seconds
    And no acknowledged write is lost
    And at most one node accepts writes at any time
    And the old primary rejoins as a replica within 40 seconds

  # No "at most one node accepts writes" here: a thawed primary's PostgreSQL is writable until its Patroni's
  # first loop after the thaw demotes it, and the sampler saw both nodes writable at one instant in both
  # HA runs of a CI run. The balancer sends it nothing by then; "no acknowledged write is lost" judges that.
  @paused
  Scenario: The primary freezes for longer than its leader key lives and a replica takes over
    Given the stack is healthy
    And steady load
    When the primary is paused for 20 seconds
    Then a replica had taken over before the old primary thawed
    And the API recovers within 40 seconds
    And the old primary rejoins as a replica within 40 seconds
    And no acknowledged write is lost

  @replica
  Scenario: The synchronous replica dies, Patroni makes the other one synchronous and writes carry on
    Given the stack is healthy
    And steady load
    When the synchronous replica is killed
    And the load runs for 10 seconds
    Then the error rate stays below 5%
    And every failed request is answered with 503
    And no acknowledged write is lost
    And at most one node accepts writes at any time
    When the killed replica is started again
    Then the cluster has 2 healthy replicas within 30 seconds

  @lag
  Scenario: The replicas fall behind and the primary keeps acknowledging writes
    Given the stack is healthy
    And steady load
    When replication to the replicas lags by 5 seconds
    Then the replicas were behind the primary while replication lagged
    And the error rate stays below 1%
    And the replicas catch up within 10 seconds
    And no acknowledged write is lost
