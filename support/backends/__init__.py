"""What runs the stack: ``process`` (child processes, the default), ``docker`` (a real engine), ``attached``.

Each backend starts the services and returns a :class:`support.stack.stack.Stack`;
a scenario never knows which one runs it. Layer 4: may import the layers below
(``core``, ``stack``, ``proxy``).
"""
