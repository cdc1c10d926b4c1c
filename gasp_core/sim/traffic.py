"""Traffic of the embedded world: lane-following vehicles, cyclists, pedestrians and the ego vehicle.

Vehicles follow the lane graph with the Intelligent Driver Model (IDM), stop at red lights, let
left turns yield to oncoming traffic and brake for anything in their path corridor (other
vehicles, crossing pedestrians). Pedestrians walk a sidewalk graph and cross at crosswalks when
their light is green. The ego vehicle is one of the vehicles, taking random turns.
"""

from __future__ import annotations

import math

import numpy as np

from gasp_core.sim.agents import AGENT_SIZES, AgentTrack, Pedestrian, Vehicle, paint, parked_car_tracks, track_uuid
from gasp_core.sim.config import WorldConfig
from gasp_core.sim.town import Town

IDM_MIN_GAP_M = 2.0
IDM_HEADWAY_S = 1.2
HARD_BRAKE_MPS2 = 7.0
LOOKAHEAD_M = 45.0
YIELD_RANGE_M = 40.0


class TrafficSim:
    """Steps all agents of one log and records their trajectories."""

    def __init__(self, town: Town, cfg: WorldConfig, rng: np.random.Generator) -> None:
        self.town, self.cfg, self.tcfg, self.rng = town, cfg, cfg.traffic, rng
        self.lane_cum = {
            lid: np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(l.centerline, axis=0), axis=1))])
            for lid, l in town.lanes.items()
        }
        self.road_lane_ids = [lid for lid, l in town.lanes.items() if not l.is_intersection]
        self.t = -self.tcfg.warmup_s
        self.vehicles: list[Vehicle] = []
        self.pedestrians: list[Pedestrian] = []
        self._spawn()

    # ------------------------------------------------------------ spawning
    def _free_spot(self, lanes: list[int], min_gap_m: float) -> tuple[int, float]:
        weights = np.array([self.lane_cum[l][-1] for l in lanes])
        for _ in range(200):
            lid = int(self.rng.choice(lanes, p=weights / weights.sum()))
            s = float(self.rng.uniform(3.0, self.lane_cum[lid][-1] - 3.0))
            xy = self._point(lid, s)
            if all(np.linalg.norm(xy - v.xy) > min_gap_m for v in self.vehicles):
                return lid, s
        raise RuntimeError("town too small for the requested number of vehicles; lower traffic.vehicles")

    def _spawn(self) -> None:
        t, rng = self.tcfg, self.rng
        n_lanes = self.town.cfg.lanes_per_direction
        lid, s = self._free_spot(self.road_lane_ids, 15.0)
        ego = Vehicle(
            "ego",
            [lid],
            s,
            t.ego_speed_mps * 0.5,
            t.ego_speed_mps,
            self.cfg.ego_length_m,
            self.cfg.ego_width_m,
            self.cfg.ego_height_m,
        )
        self._place(ego)
        self.vehicles.append(ego)
        kinds = rng.choice(
            ["car", "truck", "bus"],
            size=t.vehicles,
            p=[1 - t.truck_fraction - t.bus_fraction, t.truck_fraction, t.bus_fraction],
        )
        for kind in list(kinds) + ["cyclist"] * t.cyclists:
            outer = kind == "cyclist"
            lanes = (
                [l for l in self.road_lane_ids if self.town.lanes[l].lane_index == n_lanes - 1]
                if outer
                else self.road_lane_ids
            )
            lid, s = self._free_spot(lanes, 12.0)
            _, lr, wr, hr = AGENT_SIZES[str(kind)]
            v0 = rng.uniform(4.0, 6.0) if outer else rng.uniform(*t.vehicle_speed_mps)
            veh = Vehicle(
                str(kind), [lid], s, 0.5 * v0, v0, rng.uniform(*lr), rng.uniform(*wr), rng.uniform(*hr), outer
            )
            self._place(veh)
            self.vehicles.append(veh)
        for _ in range(t.pedestrians):
            _, lr, wr, hr = AGENT_SIZES["pedestrian"]
            e = int(rng.integers(len(self.town.ped_edges)))
            while self.town.ped_edges[e][2] >= 0:  # start on a sidewalk edge
                e = int(rng.integers(len(self.town.ped_edges)))
            a, b = self._ped_edge_ends(e, True)
            ped = Pedestrian(
                e,
                bool(rng.random() < 0.5),
                float(rng.uniform(0, np.linalg.norm(b - a))),
                float(rng.uniform(1.0, 1.6)),
                float(rng.uniform(-0.6, 0.6)),
                rng.uniform(*lr),
                rng.uniform(*wr),
                rng.uniform(*hr),
            )
            self._place_ped(ped)
            self.pedestrians.append(ped)

    # ------------------------------------------------------------ geometry helpers
    def _point(self, lid: int, s: float) -> np.ndarray:
        cum, line = self.lane_cum[lid], self.town.lanes[lid].centerline
        return np.array([np.interp(s, cum, line[:, 0]), np.interp(s, cum, line[:, 1])])

    def _place(self, veh: Vehicle) -> None:
        lid = veh.route[0]
        veh.xy = self._point(lid, veh.s)
        length = self.lane_cum[lid][-1]
        d = self._point(lid, min(veh.s + 0.75, length)) - self._point(lid, max(veh.s - 0.75, 0.0))
        norm = math.hypot(d[0], d[1])
        if norm > 1e-6:
            veh.heading = d / norm

    def _extend_route(self, veh: Vehicle, horizon_m: float) -> None:
        remaining = self.lane_cum[veh.route[0]][-1] - veh.s + sum(self.lane_cum[l][-1] for l in veh.route[1:])
        while remaining < horizon_m:
            options = self.town.lanes[veh.route[-1]].successors
            if veh.outer_only:
                options = [o for o in options if self.town.lanes[o].turn != "left"] or options
            nxt = int(self.rng.choice(options))
            veh.route.append(nxt)
            remaining += self.lane_cum[nxt][-1]

    def _route_points(
        self, veh: Vehicle, start_m: float, horizon_m: float, n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points (n, 2) along the route from ``veh.s + start_m``, their arc length and route index."""
        self._extend_route(veh, start_m + horizon_m + 1.0)
        q = np.linspace(start_m, start_m + horizon_m, n) + veh.s
        pts = np.empty((n, 2))
        which = np.empty(n, dtype=int)
        offset = 0.0
        for k, lid in enumerate(veh.route):
            cum = self.lane_cum[lid]
            sel = (
                (q >= offset) & (q <= offset + cum[-1] + 1e-9)
                if k == 0
                else (q > offset) & (q <= offset + cum[-1] + 1e-9)
            )
            if k == 0:
                sel |= q < offset
            line = self.town.lanes[lid].centerline
            pts[sel, 0] = np.interp(q[sel] - offset, cum, line[:, 0])
            pts[sel, 1] = np.interp(q[sel] - offset, cum, line[:, 1])
            which[sel] = k
            offset += cum[-1]
            if offset >= q[-1]:
                break
        return pts, q - veh.s, which

    def _ped_edge_ends(self, e: int, forward: bool) -> tuple[np.ndarray, np.ndarray]:
        a, b, _, _ = self.town.ped_edges[e]
        pa, pb = self.town.ped_nodes_xy[a], self.town.ped_nodes_xy[b]
        return (pa, pb) if forward else (pb, pa)

    def _place_ped(self, ped: Pedestrian) -> None:
        a, b = self._ped_edge_ends(ped.edge, ped.forward)
        d = (b - a) / max(np.linalg.norm(b - a), 1e-9)
        ped.heading = d
        ped.xy = a + d * ped.d + np.array([-d[1], d[0]]) * ped.lateral_m

    # ------------------------------------------------------------ stepping
    def _obstacles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        agents = [(v.xy, v.heading, v.length / 2, v.width / 2, v.v) for v in self.vehicles]
        agents += [
            (p.xy, p.heading, p.length / 2, p.width / 2, 0.0 if p.waiting else p.speed) for p in self.pedestrians
        ]
        xy = np.array([a[0] for a in agents])
        heading = np.array([a[1] for a in agents])
        half = np.array([[a[2], a[3]] for a in agents])
        speed = np.array([a[4] for a in agents])
        return xy, heading, half, speed

    def _leader_gap(self, i: int, veh: Vehicle, obstacles) -> tuple[float, float, int]:
        """Gap (m) to the nearest obstacle in the path corridor, its speed along the path and its index."""
        xy, heading, half, speed = obstacles
        near = np.nonzero(np.abs(xy - veh.xy).max(axis=1) < LOOKAHEAD_M + 8.0)[0]
        near = near[near != i]
        if len(near) == 0:
            return math.inf, 0.0, -1
        xy, heading, half, speed = xy[near], heading[near], half[near], speed[near]
        pts, arc, _ = self._route_points(veh, 0.0, LOOKAHEAD_M, int(LOOKAHEAD_M / 1.5) + 1)
        tangent = np.gradient(pts, axis=0)
        tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
        d = np.linalg.norm(xy[:, None, :] - pts[None], axis=2)
        nearest = np.argmin(d, axis=1)
        t = tangent[nearest]
        n = np.stack([-t[:, 1], t[:, 0]], 1)
        rel = xy - pts[nearest]
        lat = np.abs(np.einsum("ij,ij->i", rel, n))
        along = np.einsum("ij,ij->i", rel, t)
        hp = np.stack([-heading[:, 1], heading[:, 0]], 1)
        r_lat = half[:, 0] * np.abs(np.einsum("ij,ij->i", heading, n)) + half[:, 1] * np.abs(
            np.einsum("ij,ij->i", hp, n)
        )
        r_along = half[:, 0] * np.abs(np.einsum("ij,ij->i", heading, t)) + half[:, 1] * np.abs(
            np.einsum("ij,ij->i", hp, t)
        )
        s_j = arc[nearest] + along
        in_corridor = (lat < veh.width / 2 + r_lat + 0.3) & (s_j > 0.0)
        if not in_corridor.any():
            return math.inf, 0.0, -1
        gaps = np.where(in_corridor, s_j - r_along - veh.length / 2, np.inf)
        j = int(np.argmin(gaps))
        v_along = speed[j] * float(np.dot(heading[j], t[j]))
        return float(gaps[j]), max(v_along, 0.0), int(near[j])

    def _stop_gap(self, veh: Vehicle) -> float:
        """Gap to where the vehicle must stop for a red light or to yield a left turn (inf if none)."""
        lane = self.town.lanes[veh.route[0]]
        if lane.is_intersection:
            return math.inf  # committed
        self._extend_route(veh, 60.0)
        to_end = self.lane_cum[lane.id][-1] - veh.s
        stop_line = self.town.cfg.stop_line_m
        stop_at = to_end - stop_line
        front = veh.length / 2
        if stop_at - front < -1.0:  # already past the stop line: stop, if at all, at the box edge
            stop_at = to_end
        if stop_at - front > LOOKAHEAD_M:
            return math.inf
        nxt = self.town.lanes[veh.route[1]]
        t = self.tcfg
        must_stop = not self.town.light_is_green(lane.node, lane.axis, self.t, t.green_s, t.all_red_s)
        if not must_stop and nxt.turn == "left":
            must_stop = self._oncoming(lane)
        if not must_stop:
            return math.inf
        gap = stop_at - front
        if gap < veh.v**2 / (2 * HARD_BRAKE_MPS2) - 0.5 and stop_at == to_end - stop_line:
            return math.inf  # cannot stop before the line any more: clear the intersection
        return max(gap, 0.0)

    def _oncoming(self, lane) -> bool:
        """Whether oncoming traffic towards ``lane``'s intersection is near enough to block a left turn."""
        node = lane.node
        u_in = lane.centerline[-1] - lane.centerline[-2]
        u_in /= np.linalg.norm(u_in)
        for src in self.town.neighbors[node]:
            d = self.town.nodes_xy[node] - self.town.nodes_xy[src]
            if np.dot(d, u_in) > -0.5 * np.linalg.norm(d):
                continue  # not the opposite approach
            ids = set(self.town.road_lanes[(src, node)])
            for v in self.vehicles:
                if v.route[0] in ids:
                    dist = self.lane_cum[v.route[0]][-1] - v.s
                    if dist < YIELD_RANGE_M and (v.v > 1.0 or dist < 12.0):
                        return True
        return False

    def _desired_speed(self, veh: Vehicle) -> float:
        v0 = veh.v0
        offset = self.lane_cum[veh.route[0]][-1] - veh.s
        for k, lid in enumerate(veh.route):
            lane = self.town.lanes[lid]
            dist = 0.0 if k == 0 else offset
            if k > 0:
                offset += self.lane_cum[lid][-1]
            if lane.turn in ("left", "right"):
                v0 = min(v0, math.sqrt(self.tcfg.turn_speed_mps**2 + 2 * self.tcfg.comfort_decel_mps2 * dist))
            if dist > 40.0:
                break
        return v0

    def step(self) -> None:
        t, dt = self.tcfg, self.tcfg.dt_s
        obstacles = self._obstacles()
        leads = [self._leader_gap(i, v, obstacles) for i, v in enumerate(self.vehicles)]
        # break mutual blocking (two vehicles each in the other's corridor): the lower index goes
        for i, (_, _, j) in enumerate(leads):
            if 0 <= j < len(self.vehicles) and j > i and leads[j][2] == i:
                leads[i] = (math.inf, 0.0, -1)
        accel = []
        for i, veh in enumerate(self.vehicles):
            gap, v_lead, _ = leads[i]
            stop = self._stop_gap(veh)
            if stop < gap:
                gap, v_lead = stop, 0.0
            v0 = self._desired_speed(veh)
            free = 1.0 - (veh.v / max(v0, 0.1)) ** 4
            if math.isfinite(gap):
                s_star = (
                    IDM_MIN_GAP_M
                    + veh.v * IDM_HEADWAY_S
                    + veh.v * (veh.v - v_lead) / (2 * math.sqrt(t.max_accel_mps2 * t.comfort_decel_mps2))
                )
                free -= (max(s_star, 0.0) / max(gap, 0.1)) ** 2
            accel.append(float(np.clip(t.max_accel_mps2 * free, -HARD_BRAKE_MPS2, t.max_accel_mps2)))
        for veh, a in zip(self.vehicles, accel):
            veh.v = max(0.0, veh.v + a * dt)
            veh.s += veh.v * dt
            while veh.s > self.lane_cum[veh.route[0]][-1]:
                veh.s -= self.lane_cum[veh.route[0]][-1]
                veh.route.pop(0)
                self._extend_route(veh, 60.0)
            self._place(veh)
        for ped in self.pedestrians:
            self._step_ped(ped, dt)
        self.t += dt

    def _step_ped(self, ped: Pedestrian, dt: float) -> None:
        a, b, node, axis = self.town.ped_edges[ped.edge]
        if ped.waiting:
            if self.town.light_is_green(node, 1 - axis, self.t, self.tcfg.green_s, self.tcfg.all_red_s):
                ped.waiting = False
            else:
                return
        pa, pb = self._ped_edge_ends(ped.edge, ped.forward)
        length = float(np.linalg.norm(pb - pa))
        ped.d += ped.speed * dt
        if ped.d >= length:
            at = b if ped.forward else a
            options = [e for e in self.town.ped_adjacency[at] if e != ped.edge] or [ped.edge]
            crossings = [e for e in options if self.town.ped_edges[e][2] >= 0]
            walks = [e for e in options if self.town.ped_edges[e][2] < 0]
            pool = crossings if (crossings and (self.rng.random() < self.tcfg.crossing_prob or not walks)) else walks
            e = int(self.rng.choice(pool))
            ped.edge, ped.forward, ped.d = e, self.town.ped_edges[e][0] == at, 0.0
            e_node, e_axis = self.town.ped_edges[e][2], self.town.ped_edges[e][3]
            if e_node >= 0 and not self.town.light_is_green(
                e_node, 1 - e_axis, self.t, self.tcfg.green_s, self.tcfg.all_red_s
            ):
                ped.waiting = True
        self._place_ped(ped)


def simulate_traffic(town: Town, cfg: WorldConfig, rng: np.random.Generator) -> tuple[AgentTrack, list[AgentTrack]]:
    """Run warm-up plus the recorded span; return the ego track and every other agent's track.

    Times are seconds from the start of the recording; the recording extends one lidar sweep
    past ``cfg.seconds`` so every sensor sample has poses on both sides.
    """
    sim = TrafficSim(town, cfg, rng)
    t = cfg.traffic
    while sim.t < -1e-9:
        sim.step()
    n_rec = int(round((cfg.seconds + 2.0 / cfg.lidar.rate_hz) / t.dt_s)) + 1
    n_veh, n_ped = len(sim.vehicles), len(sim.pedestrians)
    xy = np.zeros((n_rec, n_veh + n_ped, 2))
    yaw = np.zeros((n_rec, n_veh + n_ped))
    for k in range(n_rec):
        if k:
            sim.step()
        for i, v in enumerate(sim.vehicles):
            xy[k, i], yaw[k, i] = v.xy, math.atan2(v.heading[1], v.heading[0])
        for i, p in enumerate(sim.pedestrians):
            xy[k, n_veh + i], yaw[k, n_veh + i] = p.xy, math.atan2(p.heading[1], p.heading[0])
    times = np.arange(n_rec) * t.dt_s
    tracks: list[AgentTrack] = []
    ego_track: AgentTrack | None = None
    bodies = [(v.kind, v.length, v.width, v.height) for v in sim.vehicles] + [
        ("pedestrian", p.length, p.width, p.height) for p in sim.pedestrians
    ]
    for i, (kind, length, width, height) in enumerate(bodies):
        z = town.surface_height(xy[:, i]) + height / 2
        category = "EGO_VEHICLE" if kind == "ego" else AGENT_SIZES[kind][0]
        track = AgentTrack(
            track_uuid(rng), kind, category, length, width, height, times, xy[:, i], yaw[:, i], z, paint(rng, kind)
        )
        if kind == "ego":
            ego_track = track
        else:
            tracks.append(track)
    tracks.extend(parked_car_tracks(town, times, rng))
    assert ego_track is not None
    return ego_track, tracks
