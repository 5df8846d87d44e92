// SPDX-License-Identifier: GPL-2.0
/*
 * hvtest: the test agent built into the tiny guest kernel (scripts/guest-kernel.sh).
 *
 * Under kvm_pvm a guest can run no user space, so this kernel code stands in for
 * ping, iperf, ip and ethtool. It leaves hv_vmbus, hv_netvsc and the network stack
 * untouched and only drives them: through kernel sockets for TCP, and through the
 * netdev, ethtool and driver-core operations a user-space tool would reach through
 * the kernel.
 *
 * Enabled by `hvtest.port=N` on the command line. Once eth0 has an IPv4 address it
 * listens on TCP port N for a control connection from the host and runs one command
 * per line. Each answer goes back on the connection and to the console as a line
 * starting with "HVTEST ". An answer starts with "ok" or "err". The commands:
 *
 *   ping                          ok pong
 *   rx FLOWS PORT BYTES           listen on PORT..PORT+FLOWS-1 ("ok listening"), take
 *                                 one connection on each, check every byte received
 *                                 against the pattern, then answer with the totals
 *   tx FLOWS A.B.C.D PORT BYTES   connect to A.B.C.D:PORT+i, send BYTES of the pattern
 *                                 on each, then answer with the totals
 *   mtu N                         dev_set_mtu (hv_netvsc rebuilds its device)
 *   features NAME=on|off ...      NAME is tx-csum, tso, rx-csum or sg; the same as
 *                                 ethtool -K, through netdev_update_features
 *   channels N                    ethtool -L combined N, through the driver's
 *                                 set_channels
 *   down | up                     the interface's IFF_UP (after "down" the answer
 *                                 reaches the console only)
 *   bounce MS                     down, MS milliseconds, up, then the answer
 *   rebind                        unbind hv_netvsc from the VMBus device and bind it
 *                                 again through the driver core, then give the new
 *                                 eth0 the old address and bring it up. The control
 *                                 connection is closed; the answer goes to the
 *                                 console only.
 *   stats                         the interface's counters and the driver's non-zero
 *                                 ethtool statistics
 *   poweroff                      kernel_power_off
 *
 * The pattern of flow f at byte offset o is byte (o % 8) of the little-endian 64-bit
 * word (o / 8 + 1) * 0x9E3779B97F4A7C15 ^ ((f + 1) << 56): no two words of a flow are
 * equal, so a lost, repeated or reordered segment shows. The host checks the same.
 */

#include <linux/completion.h>
#include <linux/device.h>
#include <linux/ethtool.h>
#include <linux/inet.h>
#include <linux/inetdevice.h>
#include <linux/init.h>
#include <linux/kthread.h>
#include <linux/moduleparam.h>
#include <linux/netdevice.h>
#include <linux/reboot.h>
#include <linux/rtnetlink.h>
#include <linux/slab.h>
#include <linux/sockios.h>
#include <linux/vmalloc.h>
#include <net/sock.h>

static int port;
module_param(port, int, 0444);
MODULE_PARM_DESC(port, "TCP control port (0: the agent stays off)");

static char ifname[IFNAMSIZ] = "eth0";

#define HVTEST_MAX_FLOWS 8
#define HVTEST_BUF (64 * 1024)
#define HVTEST_FLOW_TIMEOUT (300 * HZ)

static u64 pattern_word(u64 word, u32 flow)
{
	return (word + 1) * 0x9E3779B97F4A7C15ull ^ ((u64)(flow + 1) << 56);
}

/* Writes the pattern bytes [off, off + len) of `flow` into buf. */
static void pattern_fill(u8 *buf, u64 off, size_t len, u32 flow)
{
	size_t i = 0;

	while (i < len && ((off + i) & 7)) {
		u64 w = pattern_word((off + i) >> 3, flow);

		buf[i] = (u8)(w >> (8 * ((off + i) & 7)));
		i++;
	}
	for (; i + 8 <= len; i += 8) {
		__le64 w = cpu_to_le64(pattern_word((off + i) >> 3, flow));

		memcpy(buf + i, &w, 8);
	}
	for (; i < len; i++) {
		u64 w = pattern_word((off + i) >> 3, flow);

		buf[i] = (u8)(w >> (8 * ((off + i) & 7)));
	}
}

/* The number of bytes of buf[0..len) (stream offset `off`) that differ from the pattern. */
static u64 pattern_check(const u8 *buf, u64 off, size_t len, u32 flow)
{
	u64 bad = 0;
	size_t i = 0;

	while (i < len && ((off + i) & 7)) {
		u64 w = pattern_word((off + i) >> 3, flow);

		bad += buf[i] != (u8)(w >> (8 * ((off + i) & 7)));
		i++;
	}
	for (; i + 8 <= len; i += 8) {
		__le64 w = cpu_to_le64(pattern_word((off + i) >> 3, flow));

		if (memcmp(buf + i, &w, 8)) {
			size_t j;

			for (j = 0; j < 8; j++)
				bad += buf[i + j] != ((u8 *)&w)[j];
		}
	}
	for (; i < len; i++) {
		u64 w = pattern_word((off + i) >> 3, flow);

		bad += buf[i] != (u8)(w >> (8 * ((off + i) & 7)));
	}
	return bad;
}

static int send_all(struct socket *sock, const void *data, size_t len)
{
	while (len) {
		struct kvec iov = { .iov_base = (void *)data, .iov_len = len };
		struct msghdr msg = { .msg_flags = MSG_NOSIGNAL };
		int n = kernel_sendmsg(sock, &msg, &iov, 1, len);

		if (n <= 0)
			return n ? n : -EPIPE;
		data += n;
		len -= n;
	}
	return 0;
}

/* Answers on the control connection (when there is one) and on the console. */
static void answer(struct socket *ctl, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vscnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	pr_info("HVTEST %s\n", line);
	if (ctl) {
		line[n++] = '\n';
		send_all(ctl, line, n);
	}
}

struct flow {
	struct socket *sock; /* rx: the listening socket */
	__be32 addr;	     /* tx: where to connect */
	u16 port;
	u32 index;
	u64 bytes;	/* to move */
	u64 done;	/* moved */
	u64 bad;	/* rx: bytes that differ from the pattern */
	int err;
	struct completion finished;
};

static int rx_flow(void *arg)
{
	struct flow *f = arg;
	struct socket *conn = NULL;
	u8 *buf = vmalloc(HVTEST_BUF);
	int err;

	if (!buf) {
		f->err = -ENOMEM;
		goto out;
	}
	err = kernel_accept(f->sock, &conn, 0);
	if (err) {
		f->err = err;
		goto out;
	}
	conn->sk->sk_rcvtimeo = HVTEST_FLOW_TIMEOUT;
	for (;;) {
		struct kvec iov = { .iov_base = buf, .iov_len = HVTEST_BUF };
		struct msghdr msg = {};
		int n = kernel_recvmsg(conn, &msg, &iov, 1, HVTEST_BUF, 0);

		if (n < 0) {
			f->err = n;
			break;
		}
		if (n == 0)
			break;
		f->bad += pattern_check(buf, f->done, n, f->index);
		f->done += n;
	}
out:
	if (conn)
		sock_release(conn);
	vfree(buf);
	complete(&f->finished);
	return 0;
}

static int tx_flow(void *arg)
{
	struct flow *f = arg;
	struct socket *sock = NULL;
	struct sockaddr_in to = {
		.sin_family = AF_INET,
		.sin_port = htons(f->port),
		.sin_addr.s_addr = f->addr,
	};
	u8 *buf = vmalloc(HVTEST_BUF);
	int err;

	if (!buf) {
		f->err = -ENOMEM;
		goto out;
	}
	err = sock_create_kern(&init_net, AF_INET, SOCK_STREAM, IPPROTO_TCP, &sock);
	if (err) {
		f->err = err;
		goto out;
	}
	sock->sk->sk_sndtimeo = HVTEST_FLOW_TIMEOUT;
	err = kernel_connect(sock, (struct sockaddr *)&to, sizeof(to), 0);
	if (err) {
		f->err = err;
		goto out;
	}
	while (f->done < f->bytes) {
		size_t len = min_t(u64, HVTEST_BUF, f->bytes - f->done);

		pattern_fill(buf, f->done, len, f->index);
		err = send_all(sock, buf, len);
		if (err) {
			f->err = err;
			break;
		}
		f->done += len;
	}
	kernel_sock_shutdown(sock, SHUT_WR);
	/* Wait for the host's close, so every byte was taken before we answer. */
	sock->sk->sk_rcvtimeo = HVTEST_FLOW_TIMEOUT;
	for (;;) {
		struct kvec iov = { .iov_base = buf, .iov_len = 64 };
		struct msghdr msg = {};

		if (kernel_recvmsg(sock, &msg, &iov, 1, 64, 0) <= 0)
			break;
	}
out:
	if (sock)
		sock_release(sock);
	vfree(buf);
	complete(&f->finished);
	return 0;
}

static int listen_on(u16 p, struct socket **res)
{
	struct sockaddr_in addr = {
		.sin_family = AF_INET,
		.sin_port = htons(p),
		.sin_addr.s_addr = htonl(INADDR_ANY),
	};
	struct socket *sock;
	int err = sock_create_kern(&init_net, AF_INET, SOCK_STREAM, IPPROTO_TCP, &sock);

	if (err)
		return err;
	sock_set_reuseaddr(sock->sk);
	err = kernel_bind(sock, (struct sockaddr *)&addr, sizeof(addr));
	if (!err)
		err = kernel_listen(sock, 4);
	if (err) {
		sock_release(sock);
		return err;
	}
	sock->sk->sk_rcvtimeo = HVTEST_FLOW_TIMEOUT;
	*res = sock;
	return 0;
}

/* rx/tx: runs `flows` flows at once, one kernel thread each. */
static void run_flows(struct socket *ctl, bool rx, u32 flows, __be32 addr, u16 p0, u64 bytes)
{
	struct flow *fl;
	u64 total = 0, bad = 0, t0;
	int err = 0;
	u32 i, started = 0;

	if (!flows || flows > HVTEST_MAX_FLOWS || !bytes) {
		answer(ctl, "err %s flows=%u bytes=%llu", rx ? "rx" : "tx", flows, bytes);
		return;
	}
	fl = kcalloc(flows, sizeof(*fl), GFP_KERNEL);
	if (!fl) {
		answer(ctl, "err %s -12", rx ? "rx" : "tx");
		return;
	}
	for (i = 0; i < flows; i++) {
		fl[i].index = i;
		fl[i].port = p0 + i;
		fl[i].addr = addr;
		fl[i].bytes = bytes;
		init_completion(&fl[i].finished);
		if (rx) {
			err = listen_on(p0 + i, &fl[i].sock);
			if (err)
				break;
		}
	}
	if (err) {
		answer(ctl, "err rx listen %d", err);
		goto out;
	}
	if (rx)
		answer(ctl, "ok listening");
	t0 = ktime_get_ns();
	for (i = 0; i < flows; i++) {
		struct task_struct *t = kthread_run(rx ? rx_flow : tx_flow, &fl[i],
						    "hvtest-%s%u", rx ? "rx" : "tx", i);
		if (IS_ERR(t)) {
			err = PTR_ERR(t);
			break;
		}
		started++;
	}
	for (i = 0; i < started; i++) {
		wait_for_completion(&fl[i].finished);
		total += fl[i].done;
		bad += fl[i].bad;
		if (fl[i].err && !err)
			err = fl[i].err;
	}
	for (i = 0; i < flows; i++)
		if (fl[i].done != bytes && !err)
			err = -EIO;
	answer(ctl, "%s %s flows=%u bytes=%llu bad=%llu err=%d ms=%llu", err || bad ? "err" : "ok",
	       rx ? "rx" : "tx", flows, total, bad, err,
	       (ktime_get_ns() - t0) / NSEC_PER_MSEC);
out:
	for (i = 0; i < flows; i++)
		if (fl[i].sock)
			sock_release(fl[i].sock);
	kfree(fl);
}

static struct net_device *the_dev(void)
{
	return dev_get_by_name(&init_net, ifname);
}

/* The device's first IPv4 address and mask, or 0. Caller holds rtnl. */
static __be32 dev_addr(struct net_device *dev, __be32 *mask)
{
	struct in_device *in = __in_dev_get_rtnl(dev);
	struct in_ifaddr *ifa = in ? rtnl_dereference(in->ifa_list) : NULL;

	if (!ifa)
		return 0;
	if (mask)
		*mask = ifa->ifa_mask;
	return ifa->ifa_local;
}

static int set_up(struct net_device *dev, bool up)
{
	int err;

	rtnl_lock();
	err = dev_change_flags(dev, up ? dev->flags | IFF_UP : dev->flags & ~IFF_UP, NULL);
	rtnl_unlock();
	return err;
}

static void cmd_features(struct socket *ctl, struct net_device *dev, char *args)
{
	static const struct {
		const char *name;
		netdev_features_t bits;
	} names[] = {
		{ "tx-csum", NETIF_F_IP_CSUM | NETIF_F_IPV6_CSUM },
		{ "tso", NETIF_F_TSO | NETIF_F_TSO6 },
		{ "rx-csum", NETIF_F_RXCSUM },
		{ "sg", NETIF_F_SG },
	};
	char *word;
	int err = 0;

	rtnl_lock();
	while ((word = strsep(&args, " ")) && !err) {
		char *val = strchr(word, '=');
		size_t i;

		if (!*word)
			continue;
		if (!val) {
			err = -EINVAL;
			break;
		}
		*val++ = 0;
		for (i = 0; i < ARRAY_SIZE(names); i++)
			if (!strcmp(word, names[i].name))
				break;
		if (i == ARRAY_SIZE(names) || (strcmp(val, "on") && strcmp(val, "off")))
			err = -EINVAL;
		else if (!strcmp(val, "on"))
			dev->wanted_features |= names[i].bits & dev->hw_features;
		else
			dev->wanted_features &= ~names[i].bits;
	}
	if (!err)
		netdev_update_features(dev);
	answer(ctl, "%s features tx-csum=%d tso=%d rx-csum=%d sg=%d", err ? "err" : "ok",
	       !!(dev->features & NETIF_F_IP_CSUM), !!(dev->features & NETIF_F_TSO),
	       !!(dev->features & NETIF_F_RXCSUM), !!(dev->features & NETIF_F_SG));
	rtnl_unlock();
}

static void cmd_channels(struct socket *ctl, struct net_device *dev, u32 n)
{
	struct ethtool_channels ch = { .cmd = ETHTOOL_GCHANNELS };
	int err = -EOPNOTSUPP;

	rtnl_lock();
	if (dev->ethtool_ops && dev->ethtool_ops->get_channels &&
	    dev->ethtool_ops->set_channels) {
		dev->ethtool_ops->get_channels(dev, &ch);
		if (n > ch.max_combined) {
			err = -EINVAL;
		} else {
			ch.cmd = ETHTOOL_SCHANNELS;
			ch.combined_count = n;
			err = dev->ethtool_ops->set_channels(dev, &ch);
			dev->ethtool_ops->get_channels(dev, &ch);
		}
	}
	rtnl_unlock();
	answer(ctl, "%s channels %u max=%u err=%d", err ? "err" : "ok", ch.combined_count,
	       ch.max_combined, err);
}

static void cmd_stats(struct socket *ctl, struct net_device *dev)
{
	const struct ethtool_ops *ops = dev->ethtool_ops;
	struct rtnl_link_stats64 s;
	char line[480];
	int count, i, at = 0;
	u8 *names = NULL;
	u64 *vals = NULL;

	rtnl_lock();
	dev_get_stats(dev, &s);
	count = ops && ops->get_sset_count ? ops->get_sset_count(dev, ETH_SS_STATS) : 0;
	if (count > 0 && ops->get_strings && ops->get_ethtool_stats) {
		names = kcalloc(count, ETH_GSTRING_LEN, GFP_KERNEL);
		vals = kcalloc(count, sizeof(u64), GFP_KERNEL);
		if (names && vals) {
			struct ethtool_stats es = { .cmd = ETHTOOL_GSTATS, .n_stats = count };

			ops->get_strings(dev, ETH_SS_STATS, names);
			ops->get_ethtool_stats(dev, &es, vals);
		} else {
			count = 0;
		}
	} else {
		count = 0;
	}
	rtnl_unlock();
	answer(ctl, "ok stats rx_packets=%llu tx_packets=%llu rx_bytes=%llu tx_bytes=%llu "
		    "rx_dropped=%llu tx_dropped=%llu rx_errors=%llu tx_errors=%llu",
	       s.rx_packets, s.tx_packets, s.rx_bytes, s.tx_bytes, s.rx_dropped, s.tx_dropped,
	       s.rx_errors, s.tx_errors);
	/* The driver's counters that are not zero, several to a line. */
	line[0] = 0;
	for (i = 0; i < count; i++) {
		const char *name = (const char *)names + i * ETH_GSTRING_LEN;

		if (!vals[i] || strnlen(name, ETH_GSTRING_LEN) == ETH_GSTRING_LEN)
			continue;
		if (at > (int)sizeof(line) - 80) {
			pr_info("HVTEST ethtool%s\n", line);
			at = 0;
			line[0] = 0;
		}
		at += scnprintf(line + at, sizeof(line) - at, " %s=%llu", name, vals[i]);
	}
	answer(ctl, "ok ethtool%s", line);
	kfree(names);
	kfree(vals);
}

/* Unbinds hv_netvsc from the VMBus device and binds it again. */
static void cmd_rebind(struct net_device *dev)
{
	struct device *parent = get_device(dev->dev.parent);
	__be32 addr, mask = 0;
	struct ifreq ifr = {};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	struct net_device *again = NULL;
	int err, i;

	rtnl_lock();
	addr = dev_addr(dev, &mask);
	rtnl_unlock();
	dev_put(dev);
	if (!parent) {
		answer(NULL, "err rebind no parent device");
		return;
	}
	device_release_driver(parent);
	pr_info("HVTEST unbound %s\n", dev_name(parent));
	err = device_attach(parent);
	put_device(parent);
	if (err != 1) {
		answer(NULL, "err rebind device_attach %d", err);
		return;
	}
	for (i = 0; i < 600 && !again; i++) {
		again = the_dev();
		if (!again)
			msleep(100);
	}
	if (!again) {
		answer(NULL, "err rebind no %s after 60 s", ifname);
		return;
	}
	strscpy(ifr.ifr_name, ifname, IFNAMSIZ);
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = addr;
	err = devinet_ioctl(&init_net, SIOCSIFADDR, &ifr);
	if (!err) {
		sin->sin_addr.s_addr = mask;
		err = devinet_ioctl(&init_net, SIOCSIFNETMASK, &ifr);
	}
	if (!err)
		err = set_up(again, true);
	answer(NULL, "%s rebind %pI4 err=%d", err ? "err" : "ok", &addr, err);
	dev_put(again);
}

/* Runs one command line; returns false when the control connection must close. */
static bool run_command(struct socket *ctl, char *line)
{
	struct net_device *dev = the_dev();
	char what[16], host[20];
	u32 a, b;
	unsigned long long bytes;
	bool keep = true;

	if (!dev) {
		answer(ctl, "err no %s", ifname);
		return true;
	}
	if (!strcmp(line, "ping")) {
		answer(ctl, "ok pong");
	} else if (sscanf(line, "rx %u %u %llu", &a, &b, &bytes) == 3) {
		run_flows(ctl, true, a, 0, b, bytes);
	} else if (sscanf(line, "tx %u %19s %u %llu", &a, host, &b, &bytes) == 4) {
		run_flows(ctl, false, a, in_aton(host), b, bytes);
	} else if (sscanf(line, "mtu %u", &a) == 1) {
		int err;

		rtnl_lock();
		err = dev_set_mtu(dev, a);
		rtnl_unlock();
		answer(ctl, "%s mtu %u err=%d", err ? "err" : "ok", dev->mtu, err);
	} else if (!strncmp(line, "features ", 9)) {
		cmd_features(ctl, dev, line + 9);
	} else if (sscanf(line, "channels %u", &a) == 1) {
		cmd_channels(ctl, dev, a);
	} else if (!strcmp(line, "down") || !strcmp(line, "up")) {
		int err = set_up(dev, line[0] == 'u');

		answer(ctl, "%s %s err=%d", err ? "err" : "ok", line, err);
	} else if (sscanf(line, "bounce %u", &a) == 1) {
		int err = set_up(dev, false);

		pr_info("HVTEST down err=%d\n", err);
		msleep(a);
		if (!err)
			err = set_up(dev, true);
		answer(ctl, "%s bounce %u err=%d", err ? "err" : "ok", a, err);
	} else if (!strcmp(line, "stats")) {
		cmd_stats(ctl, dev);
	} else if (!strcmp(line, "rebind")) {
		/* The device goes away with its address: answer on the console only. */
		kernel_sock_shutdown(ctl, SHUT_RDWR);
		cmd_rebind(dev);
		return false;
	} else if (!strcmp(line, "poweroff")) {
		answer(ctl, "ok poweroff");
		dev_put(dev);
		kernel_power_off();
		return false;
	} else {
		strscpy(what, line, sizeof(what));
		answer(ctl, "err unknown command %s", what);
	}
	dev_put(dev);
	return keep;
}

/* Serves one control connection until it closes. */
static void serve(struct socket *ctl)
{
	char *buf = kmalloc(512, GFP_KERNEL);
	size_t have = 0;

	if (!buf)
		return;
	for (;;) {
		struct kvec iov = { .iov_base = buf + have, .iov_len = 511 - have };
		struct msghdr msg = {};
		char *nl;
		int n = kernel_recvmsg(ctl, &msg, &iov, 1, iov.iov_len, 0);

		if (n <= 0)
			break;
		have += n;
		buf[have] = 0;
		while ((nl = strchr(buf, '\n'))) {
			size_t len = nl - buf;

			*nl = 0;
			if (len && buf[len - 1] == '\r')
				buf[len - 1] = 0;
			if (!run_command(ctl, buf)) {
				kfree(buf);
				return;
			}
			memmove(buf, nl + 1, have - len - 1);
			have -= len + 1;
			buf[have] = 0;
		}
		if (have == 511) {
			answer(ctl, "err line too long");
			break;
		}
	}
	kfree(buf);
}

static int agent(void *unused)
{
	struct socket *lsock;
	__be32 addr = 0;
	int err;

	/* Wait for the kernel's IP autoconfiguration (ip=) to give eth0 its address. */
	while (!addr) {
		struct net_device *dev = the_dev();

		if (dev) {
			rtnl_lock();
			addr = (dev->flags & IFF_UP) ? dev_addr(dev, NULL) : 0;
			rtnl_unlock();
			dev_put(dev);
		}
		if (!addr)
			msleep(200);
	}
	err = listen_on(port, &lsock);
	if (err) {
		pr_info("HVTEST err listen %d\n", err);
		return 0;
	}
	lsock->sk->sk_rcvtimeo = MAX_SCHEDULE_TIMEOUT;
	pr_info("HVTEST ready %pI4 port=%d\n", &addr, port);
	for (;;) {
		struct socket *ctl;

		err = kernel_accept(lsock, &ctl, 0);
		if (err) {
			msleep(100);
			continue;
		}
		serve(ctl);
		sock_release(ctl);
	}
	return 0;
}

static int __init hvtest_init(void)
{
	if (port > 0 && port < 65536)
		kthread_run(agent, NULL, "hvtest");
	return 0;
}
late_initcall(hvtest_init);
