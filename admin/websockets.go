package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-server/herd/proxy"
)

// UseWebSockets shows the master's WebSockets (the ones relayed to asgi workers) in /stats
// and as Prometheus series. Called before the metrics are served.
func (m *Metrics) UseWebSockets(ws *proxy.WebSockets) {
	m.webSockets = ws
	m.registry.MustRegister(wsCollector{ws})
}

var (
	wsOpenDesc     = prometheus.NewDesc("herd_websockets_open", "WebSockets open now.", nil, nil)
	wsAcceptedDesc = prometheus.NewDesc("herd_websockets_total", "WebSockets accepted by the app.", nil, nil)
	wsMessagesDesc = prometheus.NewDesc("herd_websocket_messages_total", "WebSocket messages relayed, by direction: in from clients, out from the app.", []string{"direction"}, nil)
	wsBytesDesc    = prometheus.NewDesc("herd_websocket_message_bytes_total", "WebSocket message bytes relayed, by direction.", []string{"direction"}, nil)
	wsRestartDesc  = prometheus.NewDesc("herd_websockets_closed_worker_gone_total", "WebSockets closed with 1012 (service restart) because their worker went away.", nil, nil)
)

type wsCollector struct{ ws *proxy.WebSockets }

func (c wsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{wsOpenDesc, wsAcceptedDesc, wsMessagesDesc, wsBytesDesc, wsRestartDesc} {
		ch <- d
	}
}

func (c wsCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.ws.Counts()
	ch <- prometheus.MustNewConstMetric(wsOpenDesc, prometheus.GaugeValue, float64(n.Open))
	ch <- prometheus.MustNewConstMetric(wsAcceptedDesc, prometheus.CounterValue, float64(n.Accepted))
	ch <- prometheus.MustNewConstMetric(wsMessagesDesc, prometheus.CounterValue, float64(n.MessagesIn), "in")
	ch <- prometheus.MustNewConstMetric(wsMessagesDesc, prometheus.CounterValue, float64(n.MessagesOut), "out")
	ch <- prometheus.MustNewConstMetric(wsBytesDesc, prometheus.CounterValue, float64(n.BytesIn), "in")
	ch <- prometheus.MustNewConstMetric(wsBytesDesc, prometheus.CounterValue, float64(n.BytesOut), "out")
	ch <- prometheus.MustNewConstMetric(wsRestartDesc, prometheus.CounterValue, float64(n.ClosedByWorkerGone))
}
