"""The executive: a node's components by id and name, and their tasks in the node's TaskGroup.

Each component has a serving task (its command queue and health pings) and, if it defines
`run()`, a work task. Both live in the TaskGroup of whoever started the executive (the node).
Health restarts a component by cancelling both and starting them again; a `run()` that raises is
reported and restarted after a back-off, so no exception from a component reaches the TaskGroup.
"""

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence

from flight.runtime.component import Component, ComponentContext

RUN_RESTART_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Back-off before restarting a `run()` that raised, by consecutive failure (the last repeats)."""


class Executive:
    """The components of one node, attached with their ids, and the tasks that run them.

    `on_task_error(component, error, delay_s)` hears of every `run()` that raised (health turns it
    into an event); the task restarts after `delay_s`.
    """

    def __init__(
        self,
        components: Sequence[tuple[int, Component]],
        context: ComponentContext,
    ) -> None:
        self._by_id: dict[int, Component] = {}
        self._by_name: dict[str, Component] = {}
        for component_id, component in components:
            if component_id in self._by_id:
                raise ValueError(
                    f"components {self._by_id[component_id].name} and {component.name} "
                    f"both have id {component_id}"
                )
            if component.name in self._by_name:
                raise ValueError(f"two components named {component.name}")
            component.attach(component_id, context)
            self._by_id[component_id] = component
            self._by_name[component.name] = component
        self.on_task_error: Callable[[Component, BaseException, float], None] | None = None
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._log = logging.getLogger("flight.runtime.executive")

    def __iter__(self) -> Iterator[Component]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def components(self) -> list[Component]:
        """In id order."""
        return [self._by_id[i] for i in sorted(self._by_id)]

    def by_id(self, component_id: int) -> Component:
        return self._by_id[component_id]

    def by_name(self, name: str) -> Component:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name))
            raise KeyError(f"no component named {name!r} (there are: {known})") from None

    # -- tasks -------------------------------------------------------------------------------------

    def start(self, group: asyncio.TaskGroup) -> None:
        """Start every component's tasks in `group` (the owner's TaskGroup)."""
        self._group = group
        for component in self.components:
            self._start(component)

    def _start(self, component: Component) -> None:
        assert self._group is not None, "start the executive first"
        tasks = [self._group.create_task(component.serve(), name=f"{component.name}.serve")]
        if component.has_run:
            tasks.append(
                self._group.create_task(self._supervise(component), name=f"{component.name}.run")
            )
        self._tasks[component.name] = tasks

    def restart(self, component: Component) -> None:
        """Cancel the component's tasks and start them again (health's recovery)."""
        for task in self._tasks.get(component.name, []):
            task.cancel()
        component.restarts += 1
        self._log.warning("restarting %s (restart %d)", component.name, component.restarts)
        self._start(component)

    def stop(self) -> None:
        """Cancel every component task (the node's shutdown)."""
        for tasks in self._tasks.values():
            for task in tasks:
                task.cancel()

    def tasks(self, component: Component) -> list[asyncio.Task[None]]:
        return list(self._tasks.get(component.name, []))

    async def _supervise(self, component: Component) -> None:
        failures = 0
        while True:
            try:
                await component.run()
                return
            except Exception as error:  # a bug in run(): report, back off, run again
                delay_s = RUN_RESTART_DELAYS_S[min(failures, len(RUN_RESTART_DELAYS_S) - 1)]
                failures += 1
                self._log.exception("%s.run raised; restarting in %s s", component.name, delay_s)
                if self.on_task_error is not None:
                    try:
                        self.on_task_error(component, error, delay_s)
                    except Exception:
                        self._log.exception("reporting the failure of %s.run", component.name)
                await asyncio.sleep(delay_s)
